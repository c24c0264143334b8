package backpressure

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Partition names one input partition.
type Partition struct {
	Topic     string
	Partition int32
}

// Limits bound every partition's rate, in records/s, like Spark's
// spark.streaming.kafka.minRatePerPartition and maxRatePerPartition.
type Limits struct {
	Min float64 // floor for every partition, so none starves behind a lagging neighbour
	Max float64 // cap for every partition; zero or less means no cap; wins over Min
}

// Unlimited is the budget of a partition when backpressure is disabled.
const Unlimited int64 = math.MaxInt64

// Split divides a total rate over partitions in proportion to their lag: rate(p) = clamp(k*lag(p),
// Min, Max), with the one k for which the rates add up to total. What the cap takes from a partition
// thus goes to the others, and the floor is paid for by the others. When the floors alone exceed
// total, every partition gets Min: the floor is a promise per partition, so the total rate grows
// with the partition count. When every lag is zero (or unknown), the partitions share equally.
func Split(total float64, lags map[Partition]int64, limits Limits) map[Partition]float64 {
	if math.IsNaN(total) {
		total = 0
	}
	lo := max(0, limits.Min)
	hi := math.Inf(1)
	if limits.Max > 0 {
		hi = limits.Max
		lo = min(lo, hi)
	}
	weights := make(map[Partition]float64, len(lags))
	anyLag := false
	for p, lag := range lags {
		weights[p] = float64(max(0, lag))
		anyLag = anyLag || lag > 0
	}
	if !anyLag {
		for p := range weights {
			weights[p] = 1
		}
	}

	// The sum of clamp(k*w, lo, hi) is piecewise linear in k and grows where some partition is
	// between its bounds: walk its breakpoints in order until it reaches total.
	type breakpoint struct{ k, dSlope float64 }
	var bps []breakpoint
	sum := 0.0 // at k = 0
	for _, w := range weights {
		sum += lo
		if w > 0 {
			bps = append(bps, breakpoint{lo / w, w})
			if !math.IsInf(hi, 1) {
				bps = append(bps, breakpoint{hi / w, -w})
			}
		}
	}
	slices.SortFunc(bps, func(a, b breakpoint) int { return cmp.Compare(a.k, b.k) })
	k, slope := 0.0, 0.0
	for _, bp := range bps {
		if slope > 0 && sum+slope*(bp.k-k) >= total {
			break
		}
		sum += slope * (bp.k - k)
		k, slope = bp.k, slope+bp.dSlope
	}
	if slope > 0 && total > sum {
		k += (total - sum) / slope
	}

	rates := make(map[Partition]float64, len(weights))
	for p, w := range weights {
		rates[p] = lo
		if w > 0 {
			rates[p] = min(hi, max(lo, k*w))
		}
	}
	return rates
}

// Budget is the number of records a partition may contribute to one batch: its rate times the
// interval, and at least one for a partition with lag, so that a partition with a tiny share of a
// small rate still moves.
func Budget(rate float64, interval time.Duration, lag int64) int64 {
	n := rate * interval.Seconds()
	switch {
	case math.IsNaN(n) || n <= 0:
		n = 0
	case n >= math.MaxInt64:
		return Unlimited
	}
	budget := int64(math.Round(n))
	if lag > 0 {
		budget = max(budget, 1)
	}
	return budget
}
