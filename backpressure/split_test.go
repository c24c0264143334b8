package backpressure

import (
	"math"
	"testing"
	"time"
)

func TestSplit(t *testing.T) {
	inf := math.Inf(1)
	cases := []struct {
		name   string
		total  float64
		lags   []int64
		limits Limits
		want   []float64
	}{
		{"in proportion to lag", 600, []int64{10, 20, 30}, Limits{}, []float64{100, 200, 300}},
		{"cap redistributed to the others", 600, []int64{10, 10, 40}, Limits{Max: 250}, []float64{175, 175, 250}},
		{"redistribution caps in turn", 1000, []int64{1, 30, 69}, Limits{Max: 400}, []float64{200, 400, 400}},
		{"every partition capped", 1000, []int64{1, 1}, Limits{Max: 100}, []float64{100, 100}},
		{"floor paid for by the others", 100, []int64{1, 99}, Limits{Min: 10}, []float64{10, 90}},
		{"floors above the total", 5, []int64{1, 1, 100}, Limits{Min: 10}, []float64{10, 10, 10}},
		{"zero lag gets the floor", 100, []int64{0, 100}, Limits{Min: 1}, []float64{1, 99}},
		{"negative lag is zero lag", 100, []int64{-5, 100}, Limits{}, []float64{0, 100}},
		{"no lag anywhere shares equally", 90, []int64{0, 0, 0}, Limits{Min: 1}, []float64{30, 30, 30}},
		{"cap wins over floor", 10, []int64{1, 1}, Limits{Min: 50, Max: 20}, []float64{20, 20}},
		{"unlimited", inf, []int64{1, 3}, Limits{}, []float64{inf, inf}},
		{"unlimited but capped", inf, []int64{1, 3}, Limits{Max: 7}, []float64{7, 7}},
		{"empty", 100, nil, Limits{Min: 1}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Split(c.total, lagsOf(c.lags...), c.limits)
			if got == nil || len(got) != len(c.lags) {
				t.Fatalf("Split = %v, want %d partitions", got, len(c.lags))
			}
			for i, want := range c.want {
				p := Partition{Topic: "in", Partition: int32(i)}
				if g := got[p]; !(near(g, want) || math.IsInf(want, 1) && math.IsInf(g, 1)) {
					t.Errorf("partition %d: %v, want %v (all: %v)", i, g, want, got)
				}
			}
		})
	}
}

func TestSplitNeverStarvesALaggingPartition(t *testing.T) {
	lags := lagsOf(1, backlog, backlog, 0)
	for _, total := range []float64{0, 1e-9, 1, 1e9} {
		for p, r := range Split(total, lags, Limits{Min: 1, Max: 1e6}) {
			if lags[p] > 0 && r <= 0 {
				t.Errorf("total %v: lagging partition %v gets rate %v", total, p, r)
			}
		}
	}
}

func TestBudget(t *testing.T) {
	cases := []struct {
		name     string
		rate     float64
		interval time.Duration
		lag      int64
		want     int64
	}{
		{"rate times interval", 1000, 2 * time.Second, backlog, 2000},
		{"rounded", 10.6, time.Second, backlog, 11},
		{"at least one for a lagging partition", 0.2, time.Second, 3, 1},
		{"zero rate still moves a lagging partition", 0, time.Second, 3, 1},
		{"nothing for a partition without lag", 0.2, time.Second, 0, 0},
		{"unlimited", math.Inf(1), time.Second, 0, Unlimited},
		{"overflow", 1e30, time.Hour, 1, Unlimited},
		{"not a number", math.NaN(), time.Second, 5, 1},
	}
	for _, c := range cases {
		if got := Budget(c.rate, c.interval, c.lag); got != c.want {
			t.Errorf("%s: Budget(%v, %v, %v) = %d, want %d", c.name, c.rate, c.interval, c.lag, got, c.want)
		}
	}
}
