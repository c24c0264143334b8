package dedupe

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/eosproc/eosproc/stream"
)

// changelogOf restores n upserts of distinct identities.
type changelogOf int

func (n changelogOf) Restore(_ context.Context, _ string, _ int32, apply func(key, value []byte) error) (int, error) {
	ts := time.Now()
	for i := range int(n) {
		m := Mutation{ID: "id-" + strconv.Itoa(i), Timestamp: ts}
		if err := apply(m.Key(), m.Value()); err != nil {
			return i, err
		}
	}
	return int(n), nil
}

// progressLog records the progress reports of a restore.
type progressLog struct {
	reports  []int
	restored int
}

func (p *progressLog) RestoreProgress(_ stream.TopicPartition, records int) {
	p.reports = append(p.reports, records)
}
func (p *progressLog) Restored(_ stream.TopicPartition, records int, _ time.Duration) {
	p.restored = records
}
func (p *progressLog) Dropped(stream.TopicPartition, int) {}
func (p *progressLog) Entries(stream.TopicPartition, int) {}
func (p *progressLog) Forgotten(stream.TopicPartition)    {}

// A restore reports progress as it reads, so that /healthz sees work rather than a stuck loop, and the reports
// add up to what was restored.
func TestRestoreReportsProgressWhileItReads(t *testing.T) {
	spec, err := ParseIdentitySpec("key")
	if err != nil {
		t.Fatal(err)
	}
	obs := &progressLog{}
	s := &Stage{Identity: spec, Store: Config{Window: time.Hour, MaxEntries: 10_000},
		ChangelogTopic: func(in string) string { return in + "-changelog" }, Restorer: changelogOf(2500), Observer: obs}
	in := []stream.Record{{Topic: "in", Partition: 0, Key: []byte("new"), Timestamp: time.Now()}}
	if _, _, _, err := s.Filter(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if want := []int{1000, 1000, 500}; !slices.Equal(obs.reports, want) || obs.restored != 2500 {
		t.Errorf("progress reports %v, restored %d; want %v and 2500", obs.reports, obs.restored, want)
	}
}
