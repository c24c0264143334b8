package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/dedupe"
	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/testcontainers"
	"github.com/eosproc/eosproc/txn"
)

// dedupeInput writes the identities [first, first+n) of a phase, each once, plus dups duplicates of identities
// drawn from [0, first+n): records with the same key and value in the same partition, as a retrying upstream
// producer would leave them. Duplicates of earlier phases' identities test state that survived kills and moves.
func dedupeInput(ctx context.Context, t *testing.T, f *fixture, rng *rand.Rand, first, n, dups int) {
	t.Helper()
	msgs := kafkatest.Records(f.input, 6, first, n, 100)
	for range dups {
		i := rng.IntN(first + n)
		dup := kafkatest.Records(f.input, 6, i, 1, 100)[0]
		// A duplicate of this phase's identity goes after its original; one of an older identity anywhere.
		at := rng.IntN(len(msgs) + 1)
		if i >= first {
			at = i - first + 1 + rng.IntN(len(msgs)-(i-first))
		}
		msgs = append(msgs[:at], append([]*kafka.Message{dup}, msgs[at:]...)...)
	}
	p, err := kafkatest.NewProducer(ctx, f.cluster.BootstrapServers(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Send(ctx, msgs, true); err != nil {
		t.Fatal(err)
	}
}

// TestDedupeKeepsOneRecordPerIdentityThroughKillsAndMoves feeds 60,000 records of which 20% repeat an identity,
// spread over two phases, to two replicas with de-duplication by key. One replica is SIGKILLed and restarted
// three times and the other is stopped for good, so its partitions, and their state, move to the first: the
// output must hold exactly one record per identity.
func TestDedupeKeepsOneRecordPerIdentityThroughKillsAndMoves(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 6, outputPartitions: 6})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))

	const perPhase, dupsPerPhase = 24_000, 6_000 // 48,000 identities, 12,000 duplicates: 20% of 60,000
	dedupeInput(ctx, t, f, rng, 0, perPhase, dupsPerPhase)
	// A changelog an older version made, with Kafka's segment and cleaning defaults: the processor reconfigures it.
	changelog := "e2e-dedupe-" + f.input
	if err := f.cluster.CreateTopic(ctx, changelog, 6, 0, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	extra := map[string]string{
		"PROCESSOR_DEDUPE_IDENTITY":      "key",
		"PROCESSOR_MAX_BATCH_RECORDS":    "2000",
		"PROCESSOR_TEST_COST_PER_RECORD": "100us",
		// Every client logs its configuration once at creation: lines that must reach the JSON log (checked below).
		"PROCESSOR_KAFKA_PROPERTIES": "debug=conf",
		"PROCESSOR_LOG_LEVEL":        "debug",
	}
	killed := f.start("d0", extra)
	leaver := f.start("d1", extra)

	f.waitProgress(ctx, 20_000)
	if err := killed.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = f.start("d0", extra)
	t.Log("kill 1 of d0")
	dedupeInput(ctx, t, f, rng, perPhase, perPhase, dupsPerPhase)
	f.waitProgress(ctx, 30_000)
	if err := killed.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = f.start("d0", extra)
	t.Log("kill 2 of d0")
	f.waitProgress(ctx, 20_000)
	if code, err := leaver.Stop(45 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop d1: exit %d, %v", code, err)
	}
	t.Log("d1 stopped for good: its partitions and their state move to d0")
	f.waitProgress(ctx, 10_000)
	if err := killed.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = f.start("d0", extra)
	t.Log("kill 3 of d0")
	f.waitCaughtUp(ctx)
	dropped, err := killed.Metric(ctx, "eosproc_dedupe_duplicates_dropped_total")
	if err != nil {
		t.Fatal(err)
	}
	f.stopAll()

	perKey, total := f.outputPerKey(ctx)
	var missing, repeated []string
	for i := range 2 * perPhase {
		key := "key-" + strconv.Itoa(i)
		switch perKey[key] {
		case 1:
		case 0:
			missing = append(missing, key)
		default:
			repeated = append(repeated, fmt.Sprintf("%s x%d", key, perKey[key]))
		}
	}
	t.Logf("outputs %d for %d identities (inputs %d); duplicates dropped by the last run of d0: %.0f",
		total, 2*perPhase, 2*(perPhase+dupsPerPhase), dropped)
	if len(missing) > 0 || len(repeated) > 0 || total != 2*perPhase {
		t.Fatalf("want exactly one output per identity: %d outputs, %d identities missing (e.g. %s), %d repeated (e.g. %s)",
			total, len(missing), strings.Join(first(missing, 3), ", "), len(repeated), strings.Join(first(repeated, 3), ", "))
	}
	if dlq, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.dlq); err != nil || len(dlq[0]) != 0 {
		t.Fatalf("dead-letter topic: %d records, %v; want none", len(dlq[0]), err)
	}
	cfg, err := f.cluster.TopicConfig(ctx, changelog)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range dedupe.ChangelogConfig {
		if cfg[k] != want {
			t.Errorf("changelog %s: %s = %q, want %q", changelog, k, cfg[k], want)
		}
	}
	// The de-duplication admin and restore clients log through the processor's JSON log, like the others.
	for _, in := range []*procrun.Instance{killed, leaver} {
		lines := strings.Split(strings.TrimSpace(in.Log()), "\n")
		restoreLogged := false
		for i, line := range lines {
			var e map[string]any
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Errorf("%s log line %d is not JSON: %q", in.Name, i+1, line)
				continue
			}
			restoreLogged = restoreLogged || strings.HasPrefix(fmt.Sprint(e["component"]), "dedupe-")
		}
		if !restoreLogged {
			t.Errorf("%s: no librdkafka line of the de-duplication clients in the log", in.Name)
		}
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// TestDedupeRestoreHoldsOnlyItsPartition: one changelog partition holds 2,000,000 updates, so restoring it takes
// many seconds; the other partitions' batches go on meanwhile (their inputs are committed while it still
// restores), and once restored, that partition's records are judged against its state: the identities its
// changelog holds are dropped, the rest are out exactly once.
func TestDedupeRestoreHoldsOnlyItsPartition(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 3, outputPartitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	const perPartition, updates, seen = 3_000, 2_000_000, 500
	changelog := "e2e-dedupe-" + f.input
	if err := f.cluster.CreateTopic(ctx, changelog, 3, 0, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	// Partition 0's changelog: updates of 100,000 other identities, then the first `seen` identities of input
	// partition 0 (key-0, key-3, ...), as if a previous owner had processed them just now.
	p, err := kafkatest.NewProducer(ctx, f.cluster.BootstrapServers(), "")
	if err != nil {
		t.Fatal(err)
	}
	now := dedupe.EncodeTimestamp(time.Now())
	const chunk = 100_000
	for from := 0; from < updates; from += chunk {
		msgs := make([]*kafka.Message, min(chunk, updates-from))
		for i := range msgs {
			key := fmt.Appendf(nil, "other-%d", (from+i)%100_000)
			if k := from + i - (updates - seen); k >= 0 {
				key = fmt.Appendf(nil, "key-%d", 3*k)
			}
			msgs[i] = &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &changelog, Partition: 0}, Key: key, Value: now}
		}
		if err := p.Send(ctx, msgs, true); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	f.produce(ctx, 3, 0, 3*perPartition, nil)

	proc := f.start("r0", map[string]string{"PROCESSOR_DEDUPE_IDENTITY": "key", "PROCESSOR_MAX_BATCH_RECORDS": "500"})
	err = testcontainers.WaitFor(ctx, "partitions 1 and 2 committed", func(ctx context.Context) (bool, error) {
		committed, err := kafkatest.Committed(ctx, f.cluster.BootstrapServers(), f.group, f.input)
		return err == nil && committed[1] == perPartition && committed[2] == perPartition, err
	})
	if err != nil {
		t.Fatal(err)
	}
	committed, err := kafkatest.Committed(ctx, f.cluster.BootstrapServers(), f.group, f.input)
	if err != nil {
		t.Fatal(err)
	}
	restored, err := proc.Metric(ctx, "eosproc_dedupe_restored_records_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("partitions 1 and 2 committed; partition 0 committed to %d, %.0f changelog records restored", committed[0], restored)
	if committed[0] == perPartition {
		t.Fatal("partition 0 committed with the others: its restore held every partition's batches")
	}
	f.waitCaughtUp(ctx)
	if restored, err = proc.Metric(ctx, "eosproc_dedupe_restored_records_total"); err != nil || restored < updates {
		t.Fatalf("%.0f changelog records restored (%v), want at least %d", restored, err, updates)
	}
	f.stopAll()

	perKey, _ := f.outputPerKey(ctx)
	var wrong []string
	for i := range 3 * perPartition {
		key := "key-" + strconv.Itoa(i)
		want := 1
		if i%3 == 0 && i/3 < seen {
			want = 0 // in partition 0's changelog: a duplicate
		}
		if perKey[key] != want {
			wrong = append(wrong, fmt.Sprintf("%s x%d (want %d)", key, perKey[key], want))
		}
	}
	if len(wrong) > 0 || len(perKey) != 3*perPartition-seen {
		t.Fatalf("%d identities out, want %d; wrong: %d, first %v", len(perKey), 3*perPartition-seen, len(wrong), wrong[:min(len(wrong), 10)])
	}
}

// outputPerKey reads the output with read_committed: how many records each key has, and the records in all.
func (f *fixture) outputPerKey(ctx context.Context) (map[string]int, int) {
	f.t.Helper()
	out, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.output)
	if err != nil {
		f.t.Fatal(err)
	}
	perKey, total := map[string]int{}, 0
	for _, msgs := range out {
		for _, m := range msgs {
			perKey[string(m.Key)]++
			total++
		}
	}
	return perKey, total
}

// TestDedupeByJSONFieldDeadLettersWhatHasNoIdentity de-duplicates by a JSON field through the real binary: 3,000
// records of order events, 900 of them repeating an earlier order id (in the same partition), some truncated
// JSON and some without the field. The output holds each order id of a readable record once; the truncated and
// fieldless records, and only they, are dead-lettered, with a reason that says which.
func TestDedupeByJSONFieldDeadLettersWhatHasNoIdentity(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 3, outputPartitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	const n, unique = 3000, 2100 // record i >= unique repeats the order of record i-unique, in the same partition
	malformed := func(i int) bool { return i%97 == 5 }
	fieldless := func(i int) bool { return !malformed(i) && i%89 == 7 }
	orderOf := func(i int) string { return "o-" + strconv.Itoa(i%unique) }
	want := map[string]bool{} // the order ids of readable records
	wantDead := map[string]string{}
	f.produce(ctx, 3, 0, n, func(i int, m *kafka.Message) {
		switch {
		case malformed(i):
			m.Value = fmt.Appendf(nil, `{"order":{"id":"%s"`, orderOf(i))
			wantDead[string(m.Key)] = "malformed JSON"
		case fieldless(i):
			m.Value = fmt.Appendf(nil, `{"order":{"ref":"%s"},"n":%d}`, orderOf(i), i)
			wantDead[string(m.Key)] = `no member "id" in object "order"`
		default:
			m.Value = fmt.Appendf(nil, `{"type":"order.created","order":{"total":12.5,"id":"%s"},"n":%d}`, orderOf(i), i)
			want[orderOf(i)] = true
		}
	})
	f.start("j0", map[string]string{"PROCESSOR_DEDUPE_IDENTITY": "json:order.id", "PROCESSOR_MAX_BATCH_RECORDS": "500"})
	f.waitCaughtUp(ctx)
	f.stopAll()

	out, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.output)
	if err != nil {
		t.Fatal(err)
	}
	perOrder := map[string]int{}
	for _, msgs := range out {
		for _, m := range msgs {
			var v struct{ Order struct{ ID string } }
			if err := json.Unmarshal(m.Value, &v); err != nil {
				t.Fatalf("output %s is not the input's JSON: %v", m.Key, err)
			}
			perOrder[v.Order.ID]++
		}
	}
	for id := range want {
		if perOrder[id] != 1 {
			t.Errorf("order %s out %d times, want once", id, perOrder[id])
		}
	}
	if len(perOrder) != len(want) {
		t.Errorf("%d order ids out, want %d", len(perOrder), len(want))
	}
	dead, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.dlq)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range dead[0] {
		reason, ok := wantDead[string(m.Key)]
		if !ok {
			t.Errorf("dead letter %s: a readable record was dead-lettered (%s)", m.Key, headerOf(m, txn.HeaderError))
			continue
		}
		delete(wantDead, string(m.Key))
		if got := headerOf(m, txn.HeaderError); !strings.Contains(got, reason) || headerOf(m, txn.HeaderErrorStage) != txn.StageDedupe {
			t.Errorf("dead letter %s: reason %q at stage %q, want one containing %q at stage %q",
				m.Key, got, headerOf(m, txn.HeaderErrorStage), reason, txn.StageDedupe)
		}
	}
	if len(wantDead) > 0 {
		t.Errorf("%d records without an identity were not dead-lettered", len(wantDead))
	}
	if len(dead[0]) > 0 {
		t.Logf("%d inputs: %d order ids out, %d dead letters, e.g. %q", n, len(perOrder), len(dead[0]),
			headerOf(dead[0][0], txn.HeaderError))
	}
}
