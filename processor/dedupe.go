package processor

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eosproc/eosproc/dedupe"
	"github.com/eosproc/eosproc/stream"
	"github.com/eosproc/eosproc/txn"
)

// changelogTopic names the compacted topic holding the de-duplication state of one input topic.
func changelogTopic(appID, input string) string { return appID + "-dedupe-" + input }

// newDedupe builds the de-duplication stage, creating the changelog topics when missing; a nil interface (not a
// nil *Stage, which the loop would call) when PROCESSOR_DEDUPE_IDENTITY is not set.
func newDedupe(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (txn.Deduplicator, *dedupeMetrics, error) {
	if cfg.DedupeIdentity == "" {
		return nil, nil, nil
	}
	spec, err := dedupe.ParseIdentitySpec(cfg.DedupeIdentity)
	if err != nil {
		return nil, nil, err // validated with the rest of the config
	}
	clientCfg := cfg.adminConfig()
	admin, closeAdmin, err := newAdmin(clientCfg, cfg.GroupID+"-dedupe-admin", "dedupe-admin", log)
	if err != nil {
		return nil, nil, fmt.Errorf("de-duplication: %w", err)
	}
	defer closeAdmin()
	changelogOf := func(input string) string { return changelogTopic(cfg.AppID, input) }
	notApplied, err := dedupe.EnsureChangelogs(ctx, admin, cfg.InputTopics, changelogOf)
	if err != nil {
		return nil, nil, err
	}
	if notApplied != nil {
		log.Warn("de-duplication changelogs keep their old configuration: restores read more than the live entries",
			"want", dedupe.ChangelogConfig, "error", notApplied)
	}
	metrics := newDedupeMetrics(reg)
	return &dedupe.Stage{
		Identity:       spec,
		Store:          dedupe.Config{Window: cfg.DedupeWindow, MaxEntries: cfg.DedupeMaxEntries},
		ChangelogTopic: changelogOf,
		Restorer:       &dedupe.KafkaRestorer{Config: clientCfg, Log: log},
		Observer:       metrics,
	}, metrics, nil
}

// dedupeMetrics exports what the stage does. Labels are topic and partition, never identities.
type dedupeMetrics struct {
	dropped  *prometheus.CounterVec
	entries  *prometheus.GaugeVec
	restored prometheus.Counter
	restore  prometheus.Histogram

	lastProgress atomic.Int64 // unix nanoseconds of the last restore progress: /healthz counts it as the loop's
}

func newDedupeMetrics(reg prometheus.Registerer) *dedupeMetrics {
	m := &dedupeMetrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eosproc_dedupe_duplicates_dropped_total", Help: "Input records dropped because their identity was seen within the window (counted when judged; an aborted batch is judged again).",
		}, []string{"topic", "partition"}),
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eosproc_dedupe_entries", Help: "Identities held per assigned input partition.",
		}, []string{"topic", "partition"}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eosproc_dedupe_restored_records_total", Help: "Changelog records read to restore de-duplication state.",
		}),
		restore: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "eosproc_dedupe_restore_duration_seconds", Help: "Time to restore one partition's de-duplication state from its changelog.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
	}
	reg.MustRegister(m.dropped, m.entries, m.restored, m.restore)
	return m
}

func labels(tp stream.TopicPartition) []string {
	return []string{tp.Topic, strconv.Itoa(int(tp.Partition))}
}

func (m *dedupeMetrics) RestoreProgress(_ stream.TopicPartition, records int) {
	m.restored.Add(float64(records))
	m.lastProgress.Store(time.Now().UnixNano())
}

func (m *dedupeMetrics) Restored(_ stream.TopicPartition, _ int, took time.Duration) {
	m.restore.Observe(took.Seconds())
}

// lastRestoreProgress is when a restore last read records; zero time when none did.
func (m *dedupeMetrics) lastRestoreProgress() time.Time {
	if ns := m.lastProgress.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

func (m *dedupeMetrics) Dropped(tp stream.TopicPartition, n int) {
	m.dropped.WithLabelValues(labels(tp)...).Add(float64(n))
}

func (m *dedupeMetrics) Entries(tp stream.TopicPartition, n int) {
	m.entries.WithLabelValues(labels(tp)...).Set(float64(n))
}

func (m *dedupeMetrics) Forgotten(tp stream.TopicPartition) {
	m.entries.DeleteLabelValues(labels(tp)...)
}

// restoringLoop is the loop as /healthz sees it: reading a partition's de-duplication state, which the loop does
// inside a batch and may take minutes, is progress too.
type restoringLoop struct {
	*txn.Loop
	restores *dedupeMetrics // nil without de-duplication
}

func (r restoringLoop) LastIteration() time.Time {
	last := r.Loop.LastIteration()
	if r.restores != nil {
		if p := r.restores.lastRestoreProgress(); p.After(last) {
			return p
		}
	}
	return last
}
