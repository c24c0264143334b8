package backpressure

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func batch(at time.Duration, records int64, processing, delay time.Duration) BatchStats {
	return BatchStats{Time: t0.Add(at), Records: records, Processing: processing, SchedulingDelay: delay, Interval: time.Second}
}

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want)) }

// The expected rates below are worked out by hand from Spark's law:
// rate' = max(min, rate - kp*(rate - processed) - ki*delay*processed/interval - kd*dErr/dt).
func TestSparkPIDFollowsSparksLaw(t *testing.T) {
	pid := NewSparkPID()
	pid.Derivative = 0.5 // Spark's default is 0; set here so that the test covers the term
	steps := []struct {
		name   string
		b      BatchStats
		want   float64
		wantOK bool
	}{
		// 1000 records in 0.5s: the processing rate 2000/s only seeds the rate.
		{"first batch seeds", batch(1*time.Second, 1000, 500*time.Millisecond, 0), 0, false},
		// processed 3000/s; error = 2000-3000 = -1000; dErr = (-1000-0)/1s.
		// 2000 + 1000 - 0 - 0.5*(-1000) = 3500.
		{"proportional and derivative", batch(2*time.Second, 1500, 500*time.Millisecond, 0), 3500, true},
		// processed 2000/s; error = 3500-2000 = 1500; historical = 0.5s*2000/1s = 1000;
		// dErr = (1500-(-1000))/1s = 2500. 3500 - 1500 - 0.2*1000 - 0.5*2500 = 550.
		{"integral from scheduling delay", batch(3*time.Second, 3000, 1500*time.Millisecond, 500*time.Millisecond), 550, true},
		{"no records", batch(4*time.Second, 0, time.Second, 0), 0, false},
		{"no processing time", batch(4*time.Second, 10, 0, 0), 0, false},
		{"not later than the last update", batch(3*time.Second, 1000, time.Second, 0), 0, false},
		// processed 1000/s; error = 550-1000 = -450; historical = 10s*1000/1s = 10000;
		// dErr = (-450-1500)/2s = -975. 550 + 450 - 2000 + 487.5 < 100: the floor.
		{"floor", batch(5*time.Second, 1000, time.Second, 10*time.Second), 100, true},
	}
	for _, s := range steps {
		got, ok := pid.Update(s.b)
		if ok != s.wantOK || !near(got, s.want) {
			t.Errorf("%s: Update = %v, %v; want %v, %v", s.name, got, ok, s.want, s.wantOK)
		}
	}
}

// Spark's own suite: with kp = 1 and no scheduling delay the rate is the last processing rate.
func TestSparkPIDWithoutDelayFollowsProcessingRate(t *testing.T) {
	pid := NewSparkPID()
	pid.Update(batch(0, 10, 10*time.Millisecond, 0))
	for i := int64(1); i < 50; i++ {
		got, ok := pid.Update(batch(time.Duration(i)*20*time.Millisecond, i*20, 20*time.Millisecond, 0))
		if want := float64(i) * 1000; !ok || !near(got, max(100, want)) {
			t.Fatalf("batch %d: Update = %v, %v; want %v", i, got, ok, max(100, want))
		}
	}
}
