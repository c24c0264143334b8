package backpressure

import (
	"math"
	"sync"
	"time"
)

// Config configures a Controller. Its zero value is safe: backpressure off, every budget
// Unlimited.
type Config struct {
	// Enabled turns rate control on (spark.streaming.backpressure.enabled).
	Enabled bool
	// InitialRate is the total rate, in records/s, before the first estimate
	// (spark.streaming.backpressure.initialRate). Zero means none, as in Spark: the first batch takes
	// what the loop's batch size allows, so a backlog is not throttled while nothing is measured.
	InitialRate float64
	// MinRatePerPartition floors every partition's rate (spark.streaming.kafka.minRatePerPartition).
	// Zero means 1 record/s, so that a lagging partition never stalls.
	MinRatePerPartition float64
	// MaxRatePerPartition caps every partition's rate (spark.streaming.kafka.maxRatePerPartition).
	// Zero means no cap.
	MaxRatePerPartition float64
	// Estimator turns batch statistics into the total rate. Nil means a new Adaptive.
	Estimator Estimator
}

// Controller gives each partition its budget for the next batch and learns from each committed
// batch. The loop calls Budgets and Observe; metrics may read Rate and ProcessingRate from another
// goroutine, so a Controller locks around its state.
type Controller struct {
	enabled     bool
	initialRate float64
	limits      Limits

	mu             sync.Mutex
	est            Estimator
	rate           float64 // total records/s in force; 0 until the first Budgets or estimate
	estimated      bool
	processingRate float64
}

// NewController returns a Controller for cfg.
func NewController(cfg Config) *Controller {
	c := &Controller{
		enabled:     cfg.Enabled,
		initialRate: max(0, cfg.InitialRate),
		limits:      Limits{Min: cfg.MinRatePerPartition, Max: cfg.MaxRatePerPartition},
		est:         cfg.Estimator,
	}
	if c.limits.Min <= 0 {
		c.limits.Min = defaultMinRate
	}
	if c.est == nil {
		c.est = &Adaptive{}
	}
	if c.enabled {
		c.rate = c.initialRate
	}
	return c
}

// Budgets returns, for each partition in lags, how many records it may contribute to the next batch
// of the given interval. Lag is the records available to read (with read_committed, the last
// stable offset minus the position); the total rate goes to partitions in proportion to it (see
// Split), plus an equal share of what it allows beyond all the lags (see withArrivals).
func (c *Controller) Budgets(lags map[Partition]int64, interval time.Duration) map[Partition]int64 {
	budgets := make(map[Partition]int64, len(lags))
	if !c.enabled {
		for p := range lags {
			budgets[p] = Unlimited
		}
		return budgets
	}
	c.mu.Lock()
	if !c.estimated {
		c.rate = c.initialRate
	}
	total := c.rate
	c.mu.Unlock()
	if total == 0 {
		// No initial rate and nothing measured yet.
		for p := range lags {
			budgets[p] = Unlimited
		}
		return budgets
	}
	for p, rate := range Split(total, withArrivals(total, interval, lags), c.limits) {
		budgets[p] = Budget(rate, interval, lags[p])
	}
	return budgets
}

// withArrivals adds to every partition's lag an equal share of what the rate allows in the interval beyond all
// the lags, when it allows more. The consumer keeps reading while a batch assembles, so a partition's records
// in a batch are its lag at the start plus what arrives meanwhile; split by the lags alone, a partition that was
// caught up at that instant (on a live stream, any partition whose fetch had just been taken) would get only its
// floor and have its arrivals held back a whole interval. When the lags exceed what the rate allows, it is the
// lags alone, so a backlog drains in proportion to them as in Spark.
func withArrivals(total float64, interval time.Duration, lags map[Partition]int64) map[Partition]int64 {
	if len(lags) == 0 {
		return lags
	}
	var sum int64
	for _, lag := range lags {
		sum += max(lag, 0)
	}
	allowed := total * interval.Seconds()
	if math.IsNaN(allowed) || allowed <= float64(sum) {
		return lags
	}
	share := int64(min((allowed-float64(sum))/float64(len(lags)), 1<<53)) // bounded, so that sums cannot overflow
	weights := make(map[Partition]int64, len(lags))
	for p, lag := range lags {
		weights[p] = max(lag, 0) + share
	}
	return weights
}

// Observe feeds a committed batch to the estimator.
func (c *Controller) Observe(b BatchStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.Records > 0 && b.Processing > 0 {
		c.processingRate = float64(b.Records) / b.Processing.Seconds()
	}
	if !c.enabled {
		return
	}
	if rate, ok := c.est.Update(b); ok {
		c.rate, c.estimated = rate, true
	}
}

// Rate is the total rate in force, in records/s, before the per-partition floors and caps: the
// initial rate until the first estimate (zero, unlimited, when none is set), zero when disabled.
func (c *Controller) Rate() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rate
}

// ProcessingRate is the records per second of processing time of the last batch with records.
func (c *Controller) ProcessingRate() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.processingRate
}
