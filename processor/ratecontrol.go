package processor

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eosproc/eosproc/backpressure"
	"github.com/eosproc/eosproc/stream"
	"github.com/eosproc/eosproc/txn"
)

// rateControl adapts backpressure.Controller, which imports nothing of ours, to the loop's Budgeter, and
// exports what it decides as metrics.
type rateControl struct {
	c   *backpressure.Controller
	now func() time.Time

	limit          *prometheus.GaugeVec
	totalRate      prometheus.Gauge
	processingRate prometheus.Gauge
	schedDelay     prometheus.Gauge
	batchTime      prometheus.Gauge
	interval       prometheus.Gauge
}

func newRateControl(cfg Config, reg prometheus.Registerer) *rateControl {
	r := &rateControl{
		c: backpressure.NewController(backpressure.Config{
			Enabled:             *cfg.Backpressure, // set by resolve
			InitialRate:         cfg.BackpressureInitialRate,
			MinRatePerPartition: cfg.BackpressureMinRate,
			MaxRatePerPartition: cfg.BackpressureMaxRate,
			// The controller sizes processing (transform, produce, commit); assembling a backlogged batch (the
			// fetch) adds a few tens of milliseconds on top, so processing aims at 90% of the interval, not 95%.
			Estimator: &backpressure.Adaptive{Utilization: 0.9},
		}),
		now: time.Now,
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eosproc_backpressure_rate_limit_records_per_second",
			Help: "Most records per second each assigned input partition may contribute to the next batch (absent when backpressure is off).",
		}, []string{"topic", "partition"}),
		totalRate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eosproc_backpressure_rate_records_per_second", Help: "Total input rate the controller allows this instance.",
		}),
		processingRate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eosproc_processing_rate_records_per_second", Help: "Records of the last committed batch divided by its processing time.",
		}),
		schedDelay: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eosproc_scheduling_delay_seconds", Help: "How far the last batch overran the batch interval: the delay the next one starts with.",
		}),
		batchTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eosproc_last_batch_duration_seconds", Help: "Duration of the last committed batch; compare with eosproc_batch_interval_seconds.",
		}),
		interval: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eosproc_batch_interval_seconds", Help: "The configured batch interval.",
		}),
	}
	r.interval.Set(cfg.BatchInterval.Seconds())
	reg.MustRegister(r.limit, r.totalRate, r.processingRate, r.schedDelay, r.batchTime, r.interval)
	return r
}

// Budgets asks the controller for each partition's records this batch. A lag not known yet (-1, a partition
// just assigned) counts as 1: the partition gets a small share until its first fetch tells its lag.
func (r *rateControl) Budgets(lags map[stream.TopicPartition]int64, interval time.Duration) map[stream.TopicPartition]int64 {
	in := make(map[backpressure.Partition]int64, len(lags))
	for tp, lag := range lags {
		if lag < 0 {
			lag = 1
		}
		in[backpressure.Partition{Topic: tp.Topic, Partition: tp.Partition}] = lag
	}
	budgets := r.c.Budgets(in, interval)
	out := make(map[stream.TopicPartition]int64, len(budgets))
	r.limit.Reset()
	for p, b := range budgets {
		out[stream.TopicPartition{Topic: p.Topic, Partition: p.Partition}] = b
		if b != backpressure.Unlimited {
			r.limit.WithLabelValues(p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(b) / interval.Seconds())
		}
	}
	r.totalRate.Set(r.c.Rate())
	return out
}

// Observe feeds a committed batch to the controller.
func (r *rateControl) Observe(s txn.BatchStats) {
	r.c.Observe(backpressure.BatchStats{
		Time:            r.now(),
		Records:         int64(s.Records),
		Processing:      s.Processing,
		SchedulingDelay: s.SchedulingDelay,
		Interval:        s.Interval,
		MaxRecords:      int64(s.MaxRecords),
	})
	r.processingRate.Set(r.c.ProcessingRate())
	r.schedDelay.Set(s.SchedulingDelay.Seconds())
	r.batchTime.Set(s.Duration.Seconds())
}
