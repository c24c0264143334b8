package dedupe

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// gatedChangelog restores n upserts once its gate is closed, or fails with err; it counts the restores reading at
// once.
type gatedChangelog struct {
	n       int
	gate    chan struct{}
	err     error
	mu      sync.Mutex
	reading int
	most    int
	calls   int
}

func (g *gatedChangelog) Restore(ctx context.Context, topic string, p int32, apply func(key, value []byte) error) (int, error) {
	g.mu.Lock()
	g.calls++
	g.reading++
	g.most = max(g.most, g.reading)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.reading--
		g.mu.Unlock()
	}()
	select {
	case <-g.gate:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if g.err != nil {
		return 0, g.err
	}
	return changelogOf(g.n).Restore(ctx, topic, p, apply)
}

func (g *gatedChangelog) readingNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reading
}

func newGatedStage(t *testing.T, restorer Restorer) *Stage {
	t.Helper()
	spec, err := ParseIdentitySpec("key")
	if err != nil {
		t.Fatal(err)
	}
	return &Stage{Identity: spec, Store: Config{Window: time.Hour, MaxEntries: 10_000},
		ChangelogTopic: func(in string) string { return in + "-changelog" }, Restorer: restorer}
}

// eventually polls cond until it holds, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
	}
}

// waitReady asks Ready until it answers true, as the loop does at each batch.
func waitReady(t *testing.T, s *Stage, tp stream.TopicPartition) {
	t.Helper()
	eventually(t, tp.String()+" restored", func() bool {
		ok, err := s.Ready(context.Background(), tp)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
}

// A partition's restore runs in the background: Ready answers at once, false until the changelog is read, and the
// restored store then judges the partition's records.
func TestReadyRestoresInTheBackground(t *testing.T) {
	g := &gatedChangelog{n: 10, gate: make(chan struct{})}
	s := newGatedStage(t, g)
	tp := stream.TopicPartition{Topic: "in", Partition: 0}
	for range 3 {
		if ok, err := s.Ready(context.Background(), tp); ok || err != nil {
			t.Fatalf("Ready = %v, %v while the changelog is being read; want false, nil", ok, err)
		}
	}
	close(g.gate)
	waitReady(t, s, tp)
	if g.calls != 1 {
		t.Errorf("%d restores, want 1: asking again must not start another", g.calls)
	}
	// id-3 is in the changelog: a duplicate; id-10 is not.
	in := []stream.Record{{Topic: "in", Key: []byte("id-3"), Timestamp: time.Now()}, {Topic: "in", Key: []byte("id-10"), Timestamp: time.Now()}}
	kept, _, _, err := s.Filter(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || string(kept[0].Key) != "id-10" {
		t.Errorf("kept %d records, want only id-10: the restored store must judge them", len(kept))
	}
}

// Forget stops a running restore: a partition that moved away must not keep a client reading its changelog, and
// if it comes back it is read again from the start.
func TestForgetStopsARunningRestore(t *testing.T) {
	g := &gatedChangelog{n: 10, gate: make(chan struct{})}
	s := newGatedStage(t, g)
	tp := stream.TopicPartition{Topic: "in", Partition: 0}
	if ok, _ := s.Ready(context.Background(), tp); ok {
		t.Fatal("ready before its restore")
	}
	eventually(t, "the restore reading", func() bool { return g.readingNow() > 0 })
	r := s.restoring[tp]
	s.Forget([]stream.TopicPartition{tp})
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the restore still runs 10 s after Forget")
	}
	if r.err == nil {
		t.Error("a forgotten restore ended without error")
	}
	close(g.gate)
	waitReady(t, s, tp)
	if g.calls != 2 {
		t.Errorf("%d restores, want 2: the partition came back and is read again", g.calls)
	}
}

// A failed restore is reported once and begins again at the next call.
func TestAFailedRestoreIsReportedAndStartedAgain(t *testing.T) {
	g := &gatedChangelog{gate: make(chan struct{}), err: errors.New("broker down")}
	close(g.gate)
	s := newGatedStage(t, g)
	tp := stream.TopicPartition{Topic: "in", Partition: 0}
	var err error
	eventually(t, "the restore's failure reported", func() bool {
		_, err = s.Ready(context.Background(), tp)
		return err != nil
	})
	if err == nil || !strings.Contains(err.Error(), "broker down") || !strings.Contains(err.Error(), "in-changelog[0]") {
		t.Fatalf("Ready error %v, want the restore's, naming the changelog partition", err)
	}
	g.err = nil // safe: no restore is running after it reported
	waitReady(t, s, tp)
	if g.calls != 2 {
		t.Errorf("%d restores, want 2", g.calls)
	}
}

// Filter waits for a partition's restore that Ready started, rather than judging records against an empty store.
func TestFilterWaitsForARunningRestore(t *testing.T) {
	g := &gatedChangelog{n: 10, gate: make(chan struct{})}
	s := newGatedStage(t, g)
	tp := stream.TopicPartition{Topic: "in", Partition: 0}
	if ok, _ := s.Ready(context.Background(), tp); ok {
		t.Fatal("ready before its restore")
	}
	time.AfterFunc(10*time.Millisecond, func() { close(g.gate) })
	kept, _, _, err := s.Filter(context.Background(), []stream.Record{{Topic: "in", Key: []byte("id-3"), Timestamp: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 0 {
		t.Error("id-3 kept: the filter judged it before the restore finished")
	}
	if g.calls != 1 {
		t.Errorf("%d restores, want 1", g.calls)
	}
}

// Restores read at most concurrentRestores at a time: each has a client of its own.
func TestRestoresReadAFewAtATime(t *testing.T) {
	g := &gatedChangelog{n: 10, gate: make(chan struct{})}
	s := newGatedStage(t, g)
	const partitions = 3 * concurrentRestores
	for p := range partitions {
		s.Ready(context.Background(), stream.TopicPartition{Topic: "in", Partition: int32(p)})
	}
	close(g.gate)
	for p := range partitions {
		waitReady(t, s, stream.TopicPartition{Topic: "in", Partition: int32(p)})
	}
	if g.calls != partitions || g.most > concurrentRestores {
		t.Errorf("%d restores, at most %d at once; want %d, at most %d", g.calls, g.most, partitions, concurrentRestores)
	}
}

// A batch filtered in several calls (as its records arrive) writes each change to the changelog once: every
// call returns its own changes, not those of the calls before it; after the batch commits or aborts, the next
// one starts afresh.
func TestEachFilterCallReturnsOnlyItsOwnChanges(t *testing.T) {
	spec, err := ParseIdentitySpec("key")
	if err != nil {
		t.Fatal(err)
	}
	s := &Stage{Identity: spec, Store: Config{Window: time.Hour, MaxEntries: 100},
		ChangelogTopic: func(in string) string { return in + "-changelog" }, Restorer: changelogOf(0)}
	rec := func(key string) stream.Record {
		return stream.Record{Topic: "in", Key: []byte(key), Timestamp: time.Now()}
	}
	ids := func(changelog []stream.Record) []string {
		var out []string
		for _, r := range changelog {
			out = append(out, string(r.Key))
		}
		return out
	}
	for i, step := range []struct {
		in   []string
		then func()
		want []string
	}{
		{in: []string{"a", "b"}, want: []string{"a", "b"}},
		{in: []string{"c", "a"}, want: []string{"c"}, then: s.Committed},
		{in: []string{"d"}, want: []string{"d"}, then: s.Aborted},
		{in: []string{"d", "e"}, want: []string{"d", "e"}},
	} {
		var in []stream.Record
		for _, k := range step.in {
			in = append(in, rec(k))
		}
		_, _, changelog, err := s.Filter(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(changelog); !slices.Equal(got, step.want) {
			t.Errorf("call %d: changelog keys %q, want %q", i+1, got, step.want)
		}
		if step.then != nil {
			step.then()
		}
	}
}
