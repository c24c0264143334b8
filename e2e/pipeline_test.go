package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/internal/verify"
	"github.com/eosproc/eosproc/txn"
)

// The stages under test, set by environment variables as a user would. Records with cents of at least
// pipelineLargeCents go to the routed topic, the rest to the output topic.
const pipelineLargeCents = 50_000

var pipelineStages = map[string]string{
	"PROCESSOR_FILTER":       `value.status == "paid"`,
	"PROCESSOR_MAP":          `{"id": value.id, "cents": value.amount * 100, "country": value.country}`,
	"PROCESSOR_KEY":          `value.country`,
	"PROCESSOR_HEADERS_SET":  `{"country": value.country}`,
	"PROCESSOR_HEADERS_DROP": "trace",
	"PROCESSOR_ROUTE":        fmt.Sprintf(`value.cents >= %d ? "out-large" : "out"`, pipelineLargeCents),
	"PROCESSOR_ROUTE_TOPICS": "out-large",
}

var pipelineCountries = []string{"DE", "FR", "US", "JP", "BR"}

// pipelineInput makes record i an order as JSON: every 4th is "open" (filtered out), every 50th from the 7th on
// is cut short (malformed, so dead-lettered), and amounts spread over both routes.
func pipelineInput(i int, m *kafka.Message) {
	if i%50 == 7 {
		m.Value = []byte(fmt.Sprintf(`{"id": %d, "amount": `, i))
		return
	}
	status := "paid"
	if i%4 == 0 {
		status = "open"
	}
	m.Value = []byte(fmt.Sprintf(`{"id": %d, "amount": %d, "status": %q, "country": %q}`, i, i%1000, status, pipelineCountries[i%5]))
	m.Headers = []kafka.Header{{Key: "trace", Value: []byte("t-" + strconv.Itoa(i))}}
}

type pipelineOrder struct {
	ID      int    `json:"id"`
	Amount  *int   `json:"amount"`
	Status  string `json:"status"`
	Country string `json:"country"`
	Cents   *int   `json:"cents"`
}

// pipelineFiltered is the test's own copy of the filter: a well-formed order that is not paid.
func pipelineFiltered(m *kafka.Message) bool {
	var o pipelineOrder
	return json.Unmarshal(m.Value, &o) == nil && o.Status != "paid"
}

func TestPipelineStagesExactlyOnceThroughKills(t *testing.T) {
	f := newFixture(t, fixtureOptions{inputPartitions: 6, outputPartitions: 6})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const large = "out-large"
	if err := f.cluster.CreateTopic(ctx, large, 3, 0, nil); err != nil {
		t.Fatal(err)
	}
	if f.output != "out" {
		t.Fatalf("the route expression names the output topic %q; the fixture's is %q", "out", f.output)
	}

	const n, kills = 60_000, 3
	f.produce(ctx, 6, 0, n, pipelineInput)
	extra := map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "1000"}
	for k, v := range pipelineStages {
		extra[k] = v
	}
	started := time.Now()
	in := f.start("p0", extra)
	for k := range kills {
		lag := int64(n - (k+1)*n/(kills+1))
		f.waitProgress(ctx, lag)
		if err := in.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d: SIGKILL at lag <= %d", k+1, lag)
		in = f.start("p0", extra)
	}
	f.waitCaughtUp(ctx)
	t.Logf("%d records through filter, map, key, headers and route with %d kills in %s", n, kills, time.Since(started).Round(100*time.Millisecond))
	f.stopAll()

	opts := verify.Options{
		Bootstrap: f.cluster.BootstrapServers(), Inputs: []string{f.input}, Outputs: []string{f.output, large},
		DeadLetterTopic: f.dlq, Filtered: pipelineFiltered,
	}
	r, err := verify.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	malformed := 0
	for i := range n {
		if i%50 == 7 {
			malformed++
		}
	}
	if !r.OK() || r.Inputs != n || r.DeadLettered != malformed || r.Filtered == 0 {
		t.Fatalf("want %d inputs, the unpaid ones filtered out, the %d malformed dead-lettered, every other exactly once: %s", n, malformed, r)
	}

	// The verdict counts records; the contents must be what the stages say.
	perTopic := map[string]int{}
	for _, topic := range []string{f.output, large} {
		parts, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), topic)
		if err != nil {
			t.Fatal(err)
		}
		for _, msgs := range parts {
			for _, m := range msgs {
				perTopic[topic]++
				checkPipelineOutput(t, topic, large, m)
			}
		}
	}
	if perTopic[f.output] == 0 || perTopic[large] == 0 {
		t.Errorf("outputs per topic %v: want both routes used", perTopic)
	}
	dead, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.dlq)
	if err != nil {
		t.Fatal(err)
	}
	for _, msgs := range dead {
		for _, m := range msgs {
			if reason := headerOf(m, txn.HeaderError); !strings.HasPrefix(reason, "value is not JSON") {
				t.Errorf("dead letter %s has reason %q, want the JSON error", m.Value, reason)
			}
		}
	}

	// The verdict can fail: without the filter's copy the unpaid inputs are missing, and a filter that claims
	// too much finds outputs that should not exist.
	opts.Filtered = nil
	if r, err := verify.Run(ctx, opts); err != nil || r.OK() || r.Missing != n/4 {
		t.Errorf("verdict without the filter: want %d missing, got %s (err %v)", n/4, r, err)
	}
	opts.Filtered = func(*kafka.Message) bool { return true }
	if r, err := verify.Run(ctx, opts); err != nil || r.OK() || r.NotFiltered == 0 {
		t.Errorf("verdict filtering everything: want outputs flagged, got %s (err %v)", r, err)
	}
}

// checkPipelineOutput checks one output against the stages: the new value, the key, the headers, the route.
func checkPipelineOutput(t *testing.T, topic, large string, m *kafka.Message) {
	t.Helper()
	var o pipelineOrder
	if err := json.Unmarshal(m.Value, &o); err != nil || o.Cents == nil || o.Amount != nil || o.Status != "" {
		t.Errorf("%s: value %s is not the mapped order (err %v)", topic, m.Value, err)
		return
	}
	want := o.ID % 1000 * 100
	wantTopic := "out"
	if want >= pipelineLargeCents {
		wantTopic = large
	}
	switch {
	case *o.Cents != want:
		t.Errorf("order %d: cents %d, want %d", o.ID, *o.Cents, want)
	case string(m.Key) != pipelineCountries[o.ID%5] || headerOf(m, "country") != string(m.Key):
		t.Errorf("order %d: key %q, country header %q, want %s", o.ID, m.Key, headerOf(m, "country"), pipelineCountries[o.ID%5])
	case headerOf(m, "trace") != "":
		t.Errorf("order %d: the trace header was not dropped", o.ID)
	case topic != wantTopic:
		t.Errorf("order %d with %d cents went to %s, want %s", o.ID, *o.Cents, topic, wantTopic)
	}
}

// An output the producer would refuse (larger than its message.max.bytes) or its topic's brokers would (a record
// batch above the topic's max.message.bytes, which librdkafka would send and the broker refuse whole, again on
// every redo) must not stall the pipeline in an abort loop nor crash it: its input goes to the dead-letter topic,
// and everything else through, exactly once.
func TestOversizedOutputGoesToDeadLetterTopic(t *testing.T) {
	for _, tt := range []struct {
		name         string
		outputConfig map[string]string
		env          map[string]string
		reason       string
	}{
		{name: "above the producer's message.max.bytes", env: map[string]string{"PROCESSOR_PRODUCER_PROPERTIES": "message.max.bytes=10000"},
			reason: "above the producer's message.max.bytes (10000)"},
		// The producer's own limit is librdkafka's default (1,000,000): only the topic refuses these records, and
		// its limit is below librdkafka's batch.size, so ordinary batches of small records would be refused too.
		{name: "above the output topic's max.message.bytes", outputConfig: map[string]string{"max.message.bytes": "10000"},
			reason: "above the topic's max.message.bytes (10000)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{inputPartitions: 2, outputPartitions: 2, outputConfig: tt.outputConfig})
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			const n, bigEvery = 3_000, 100
			f.produce(ctx, 2, 0, n, func(i int, m *kafka.Message) {
				pad := 0
				if i%bigEvery == 3 {
					pad = 20_000
				}
				m.Value = []byte(fmt.Sprintf(`{"id": %d, "pad": %d}`, i, pad))
			})
			env := map[string]string{"PROCESSOR_MAP": `{"id": value.id, "pad": repeat("x", int(value.pad))}`}
			maps.Copy(env, tt.env)
			in := f.start("p0", env)
			f.waitCaughtUp(ctx)
			f.stopAll()

			r := f.verdict(ctx, false)
			if !r.OK() || r.DeadLettered != n/bigEvery {
				t.Fatalf("want %d inputs exactly once, %d of them dead-lettered: %s", n, n/bigEvery, r)
			}
			if aborted := strings.Count(in.Log(), "transaction aborted"); aborted > 0 {
				t.Errorf("%d transactions aborted: the oversized outputs should be caught before their transaction", aborted)
			}
			dead, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), f.dlq)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range dead[0] {
				var in struct{ Pad int }
				if err := json.Unmarshal(m.Value, &in); err != nil || in.Pad == 0 {
					t.Fatalf("dead letter %q is not one of the oversized records' inputs", m.Value)
				}
				if reason := headerOf(m, txn.HeaderError); !strings.Contains(reason, tt.reason) {
					t.Fatalf("dead letter reason %q does not say %q", reason, tt.reason)
				}
			}
			t.Logf("%d oversized outputs dead-lettered by their inputs, e.g. reason %q", len(dead[0]), headerOf(dead[0][0], txn.HeaderError))
		})
	}
}
