package main

import (
	"slices"
	"testing"
)

func TestInTurnStartsEachRoundOneConfigurationLater(t *testing.T) {
	peers := []peer{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	names := func(ps []peer) string {
		s := ""
		for _, p := range ps {
			s += p.Name
		}
		return s
	}
	for _, tc := range []struct {
		repeat int
		want   string
	}{{1, "abc"}, {2, "bca"}, {3, "cab"}, {4, "abc"}, {5, "bca"}} {
		if got := names(inTurn(peers, tc.repeat)); got != tc.want {
			t.Errorf("inTurn(abc, %d) = %s, want %s", tc.repeat, got, tc.want)
		}
	}
	if got := names(peers); got != "abc" {
		t.Errorf("inTurn changed its argument to %s", got)
	}
	if got := inTurn(nil, 3); len(got) != 0 {
		t.Errorf("inTurn(nil, 3) = %v, want none", got)
	}
	// Over as many rounds as configurations, each runs once in every position.
	positions := map[string][]int{}
	for repeat := 1; repeat <= len(peers); repeat++ {
		for i, p := range inTurn(peers, repeat) {
			positions[p.Name] = append(positions[p.Name], i)
		}
	}
	for name, at := range positions {
		slices.Sort(at)
		if !slices.Equal(at, []int{0, 1, 2}) {
			t.Errorf("%s ran at positions %v, want each of 0, 1, 2 once", name, at)
		}
	}
}
