package txn

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eosproc/eosproc/stream"
)

// Metrics are the loop's Prometheus metrics. Counters move only when a transaction commits, so they count what
// read_committed readers see, not work that was aborted and redone.
type Metrics struct {
	recordsIn, recordsOut, commits prometheus.Counter
	aborts, deadLetters            *prometheus.CounterVec
	batchDuration, commitDuration  prometheus.Histogram
	lag                            *prometheus.GaugeVec
	assigned                       prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg (nil: a private registry, for tests and for
// processors that do not export metrics).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		recordsIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eosproc_records_in_total", Help: "Input records in committed batches.",
		}),
		recordsOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eosproc_records_out_total", Help: "Output records committed (dead letters excluded).",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eosproc_dead_letters_total", Help: "Records committed to the dead-letter topic, by the stage that failed on them.",
		}, []string{"stage"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eosproc_transactions_committed_total", Help: "Transactions committed (one per non-empty batch).",
		}),
		aborts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eosproc_transactions_aborted_total", Help: "Batches aborted and redone, by the step that failed.",
		}, []string{"reason"}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eosproc_batch_duration_seconds", Help: "Committed batches from the start of assembly to the end of the commit.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eosproc_commit_duration_seconds", Help: "Time spent committing a transaction (flushing outputs included).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eosproc_consumer_lag_records", Help: "Records not yet processed per assigned input partition, as of the last batch.",
		}, []string{"topic", "partition"}),
		assigned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eosproc_assigned_partitions", Help: "Input partitions assigned to this instance.",
		}),
	}
	reg.MustRegister(m.recordsIn, m.recordsOut, m.deadLetters, m.commits, m.aborts, m.batchDuration,
		m.commitDuration, m.lag, m.assigned)
	m.InitDeadLetterStages(loopStages...)
	for _, reason := range abortReasons {
		m.aborts.WithLabelValues(reason)
	}
	return m
}

// abortReasons are the steps an aborted transaction is counted by, each a series from start-up so that an
// alert on their rate has something to compare the first abort with.
var abortReasons = []string{"begin", "produce", "produce_changelog", "flush", "send_offsets", "commit",
	"commit_offsets", "transform", "dedupe", "assignment_lost", "revoked", "test_abort"}

// InitDeadLetterStages makes the dead-letter counters of a transform's stages exist before their first dead
// letter.
func (m *Metrics) InitDeadLetterStages(stages ...string) {
	for _, stage := range stages {
		m.deadLetters.WithLabelValues(stage)
	}
}

func (m *Metrics) observeAssignment(lags map[stream.TopicPartition]int64) {
	m.assigned.Set(float64(len(lags)))
	// Reset drops the series of partitions no longer assigned, so a moved partition's lag does not linger here.
	m.lag.Reset()
	for tp, lag := range lags {
		if lag >= 0 {
			m.lag.WithLabelValues(tp.Topic, strconv.Itoa(int(tp.Partition))).Set(float64(lag))
		}
	}
}

func (m *Metrics) committed(in, out int, deadByStage map[string]int, batch, commit time.Duration) {
	m.recordsIn.Add(float64(in))
	m.recordsOut.Add(float64(out))
	for stage, n := range deadByStage {
		m.deadLetters.WithLabelValues(stage).Add(float64(n))
	}
	m.commits.Inc()
	m.batchDuration.Observe(batch.Seconds())
	m.commitDuration.Observe(commit.Seconds())
}

func (m *Metrics) aborted(step string) { m.aborts.WithLabelValues(step).Inc() }
