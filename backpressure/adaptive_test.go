package backpressure

import (
	"testing"
	"time"
)

func TestAdaptiveIgnoresEmptyBatches(t *testing.T) {
	var a Adaptive
	for _, b := range []BatchStats{
		batch(time.Second, 0, time.Second, 0),
		batch(time.Second, 10, 0, 0),
		{Time: t0, Records: 10, Processing: time.Second},
	} {
		if rate, ok := a.Update(b); ok {
			t.Errorf("Update(%+v) = %v, true; want false", b, rate)
		}
	}
}

// The plant below costs 100ms + 10µs per record: 90000 records/s is sustainable at 1s.
func TestAdaptiveMeasuresTheFixedCostFromTwoBatchSizes(t *testing.T) {
	var a Adaptive
	// One batch cannot tell the fixed cost from the cost per record: assume no fixed cost, which
	// underestimates the capacity (1000 records in 0.11s: 9091/s), and ask for 95% of it.
	rate, ok := a.Update(batch(time.Second, 1000, 110*time.Millisecond, 0))
	if want := 0.95 * 1000 / 0.11; !ok || !near(rate, want) {
		t.Fatalf("first Update = %v, %v; want %v", rate, ok, want)
	}
	// 8636 records take 0.18636s: the line through both batches is 0.1s + 10µs per record.
	rate, ok = a.Update(batch(2*time.Second, 8636, 186360*time.Microsecond, 0))
	if !ok || !near(a.Overhead(), 0.1) || !near(a.PerRecord(), 10e-6) {
		t.Fatalf("model = %vs + %vs per record, want 0.1s + 10µs", a.Overhead(), a.PerRecord())
	}
	// Growth is bounded by twice the throughput just seen: 2*8636/0.18636 = 92681 > 0.95*90000.
	if want := 0.95 * 90000; !near(rate, want) {
		t.Errorf("second Update = %v, want %v", rate, want)
	}
}

func TestAdaptiveGrowsAtMostTwiceTheDemonstratedThroughput(t *testing.T) {
	var a Adaptive
	a.Update(batch(time.Second, 1000, 110*time.Millisecond, 0))
	// 2000 records in 0.12s: the line says 0.1s + 10µs, capacity 90000, but the plant has only
	// shown 16667 records/s.
	rate, _ := a.Update(batch(2*time.Second, 2000, 120*time.Millisecond, 0))
	if want := 2 * 2000 / 0.12; !near(rate, want) {
		t.Errorf("Update = %v, want %v", rate, want)
	}
}

func TestAdaptiveDrainsALateScheduleGently(t *testing.T) {
	var a Adaptive
	a.Update(batch(time.Second, 1000, 110*time.Millisecond, 0))
	a.Update(batch(2*time.Second, 8636, 186360*time.Microsecond, 0))
	// A batch of 85500 records took 2.665s instead of 0.955s: the cost per record went 3x up
	// to 30µs, the fixed cost stayed, and the next batch starts 1.665s late. Capacity is
	// 0.9s / 30µs = 30000 records; draining a fifth of the delay takes 0.333s / 30µs = 11100.
	rate, _ := a.Update(batch(3*time.Second, 85500, 2665*time.Millisecond, 0))
	if !near(a.PerRecord(), 30e-6) {
		t.Errorf("cost per record = %v, want 30µs", a.PerRecord())
	}
	if want := 30000 - 1.665/5/30e-6; !near(rate, want) {
		t.Errorf("Update = %v, want %v", rate, want)
	}
	// Never below a quarter of the capacity, however late.
	rate, _ = a.Update(batch(4*time.Second, 18900, 100*time.Millisecond+18900*30*time.Microsecond, time.Minute))
	if want := 30000 / 4.0; !near(rate, want) {
		t.Errorf("Update when a minute late = %v, want %v", rate, want)
	}
}

// The fixed-cost regime sends batches to their cap, so it must not be concluded from noisy batches of a cost
// that grows with the batch: these are the batch times (ms) a busy machine measured for a 100 us-per-record
// transform, which once passed for flat.
func TestCostThatGrowsIsNotTakenForFixed(t *testing.T) {
	var grows, fixed costFit
	for _, b := range [][2]float64{{1494, 274}, {1674, 304}, {5454, 629}, {5514, 669}, {3288, 454}} {
		grows.add(b[0], b[1]/1000)
	}
	if grows.flat() {
		t.Error("100 us per record over 1,500 to 5,500 records taken for a fixed cost")
	}
	for _, b := range [][2]float64{{100, 120}, {400, 123}, {1600, 119}, {6400, 122}} {
		fixed.add(b[0], b[1]/1000)
	}
	if !fixed.flat() {
		t.Error("120 ms whatever the size not taken for a fixed cost")
	}
}
