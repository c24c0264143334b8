package main

import (
	"slices"
	"testing"
	"time"
)

func TestRatiosByRepeatPairsRunsOfTheSameRound(t *testing.T) {
	type fig struct {
		repeat int
		v      float64
	}
	for _, c := range []struct {
		name       string
		nums, dens []fig
		want       []float64
	}{
		{"rounds in another order", []fig{{1, 10}, {2, 30}}, []fig{{2, 10}, {1, 20}}, []float64{0.5, 3}},
		{"a round one side lacks", []fig{{1, 10}, {2, 30}, {3, 8}}, []fig{{1, 5}, {3, 4}}, []float64{2, 2}},
		{"a zero denominator", []fig{{1, 10}}, []fig{{1, 0}}, nil},
		{"nothing to pair", nil, []fig{{1, 1}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ratiosByRepeat(c.nums, c.dens, func(f fig) int { return f.repeat }, func(f fig) float64 { return f.v })
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestTargetsShowEachRound(t *testing.T) {
	eo := peer{Name: peerProcessor, Guarantee: "exactly_once", Interval: 100 * time.Millisecond}
	alo := peer{Name: peerProcessor, Guarantee: "at_least_once", Interval: 100 * time.Millisecond}
	run := func(p peer, repeat int, rate float64) Run {
		return Run{Workload: "100 B", Peer: p.Name, Guarantee: p.Guarantee, BatchInterval: p.intervalName(), Repeat: repeat, RecordsPerSec: rate}
	}
	r := &Results{Runs: []Run{
		run(eo, 1, 90), run(alo, 1, 100),
		run(alo, 2, 100), run(eo, 2, 120),
		run(eo, 3, 96), run(alo, 3, 100),
	}}
	for range 2 { // computed again (-report) rather than added to
		r.computeRatios()
	}
	const what = "records/s, exactly_once / at_least_once, 100 B, 100ms"
	var found []Target
	for _, tg := range r.Targets {
		if tg.What == what {
			found = append(found, tg)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d targets %q, want 1: %+v", len(found), what, r.Targets)
	}
	// Medians 96 / 100, each round on its own 0.9, 1.2, 0.96.
	if got := found[0]; got.Measured != 0.96 || !got.Met || !slices.Equal(got.Rounds, []float64{0.9, 1.2, 0.96}) {
		t.Errorf("got %+v, want measured 0.96, met, rounds [0.9 1.2 0.96]", got)
	}
}
