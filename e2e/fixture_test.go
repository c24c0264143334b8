// Package e2e proves the processor's guarantees end to end: real Apache Kafka started through testcontainers, the
// real processor binary as child processes, and a read_committed verifier. The tests skip under -short.
package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/eosproc/eosproc/internal/kafkatest"
	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/internal/verify"
	"github.com/eosproc/eosproc/testcontainers"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// processorBinary builds the processor once per test run.
func processorBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "eosproc-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		binPath, buildErr = procrun.Build(ctx, dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// fixture is one test's cluster, topics and processor instances.
type fixture struct {
	t       *testing.T
	cluster *testcontainers.Cluster
	bin     string
	logDir  string
	input   string
	output  string
	dlq     string
	group   string
	mu      sync.Mutex
	running []*procrun.Instance
}

type fixtureOptions struct {
	brokers          int
	inputPartitions  int
	outputPartitions int
	outputConfig     map[string]string      // the output topic's configuration, e.g. max.message.bytes
	topicConfig      map[string]string      // every topic's (input, output, dead letters), e.g. retention.ms
	kafka            testcontainers.Options // extra cluster options (listeners, files, broker config); brokers wins
}

func newFixture(t *testing.T, opts fixtureOptions) *fixture {
	t.Helper()
	if opts.brokers == 0 {
		opts.brokers = 1
	}
	kafkaOpts := opts.kafka
	kafkaOpts.Brokers = opts.brokers
	cluster := testcontainers.StartForTest(t, kafkaOpts)
	return fixtureOn(t, cluster, "", opts)
}

// fixtureOn is a fixture on a cluster shared with other tests: its topics and group carry name, so runs on one
// cluster do not meet.
func fixtureOn(t *testing.T, cluster *testcontainers.Cluster, name string, opts fixtureOptions) *fixture {
	t.Helper()
	logDir, err := os.MkdirTemp("", "eosproc-e2e-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		t: t, cluster: cluster, bin: processorBinary(t), logDir: logDir,
		input: name + "in", output: name + "out", dlq: name + "dlq", group: name + "e2e",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for topic, partitions := range map[string]int{f.input: opts.inputPartitions, f.output: opts.outputPartitions, f.dlq: 1} {
		configs := maps.Clone(opts.topicConfig)
		if topic == f.output && opts.outputConfig != nil {
			if configs == nil {
				configs = map[string]string{}
			}
			maps.Copy(configs, opts.outputConfig)
		}
		if err := cluster.CreateTopic(ctx, topic, partitions, 0, configs); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, in := range f.running {
			_ = in.Kill()
		}
		if t.Failed() {
			for _, in := range f.running {
				t.Logf("processor %s log: %s; last lines:\n%s", in.Name, in.LogPath, testcontainers.LastLines(in.Log(), 25))
			}
		} else if os.Getenv("E2E_KEEP_LOGS") == "" {
			os.RemoveAll(logDir)
		}
	})
	return f
}

// env is a processor's configuration in this fixture; extra adds or overrides variables.
func (f *fixture) env(instance string, extra map[string]string) map[string]string {
	env := map[string]string{
		"PROCESSOR_BROKERS":           f.cluster.BootstrapServers(),
		"PROCESSOR_INPUT_TOPICS":      f.input,
		"PROCESSOR_OUTPUT_TOPIC":      f.output,
		"PROCESSOR_DEAD_LETTER_TOPIC": f.dlq,
		"PROCESSOR_APP_ID":            "e2e",
		"PROCESSOR_GROUP_ID":          f.group,
		"PROCESSOR_INSTANCE_ID":       instance,
		"PROCESSOR_BATCH_INTERVAL":    "300ms",
		// A dead replica's partitions move within seconds instead of the default 45 s.
		"PROCESSOR_CONSUMER_PROPERTIES": "session.timeout.ms=6000;heartbeat.interval.ms=1000",
		"PROCESSOR_TRANSACTION_TIMEOUT": "20s",
		// With the transaction timeout, bounds how long a SIGTERM may take (tests stop processors within 45 s).
		"PROCESSOR_SHUTDOWN_TIMEOUT": "10s",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// start runs one processor instance; every run of an instance appends to the same log file.
func (f *fixture) start(instance string, extra map[string]string) *procrun.Instance {
	f.t.Helper()
	in, err := f.launch(instance, extra)
	if err != nil {
		f.t.Fatal(err)
	}
	return in
}

// launch is start for goroutines other than the test's, which must not call t.Fatal.
func (f *fixture) launch(instance string, extra map[string]string) (*procrun.Instance, error) {
	in, err := procrun.Start(f.bin, instance, filepath.Join(f.logDir, instance+".log"), f.env(instance, extra))
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.running = append(f.running, in)
	f.mu.Unlock()
	return in, nil
}

// produce writes input records first..first+n-1 over the input topic's partitions; mutate may change them.
func (f *fixture) produce(ctx context.Context, partitions, first, n int, mutate func(i int, m *kafka.Message)) {
	f.t.Helper()
	p, err := kafkatest.NewProducer(ctx, f.cluster.BootstrapServers(), "")
	if err != nil {
		f.t.Fatal(err)
	}
	defer p.Close()
	const chunk = 20_000
	for from := first; from < first+n; from += chunk {
		msgs := kafkatest.Records(f.input, partitions, from, min(chunk, first+n-from), 100)
		if mutate != nil {
			for j, m := range msgs {
				mutate(from+j, m)
			}
		}
		if err := p.Send(ctx, msgs, true); err != nil {
			f.t.Fatal(err)
		}
	}
}

// waitCaughtUp waits until the group has committed every input record.
func (f *fixture) waitCaughtUp(ctx context.Context) {
	f.t.Helper()
	err := testcontainers.WaitFor(ctx, "the group to commit all input", func(ctx context.Context) (bool, error) {
		lag, err := kafkatest.Lag(ctx, f.cluster.BootstrapServers(), f.group, []string{f.input})
		return err == nil && lag == 0, err
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// waitCommittedPastRecords waits until group's committed offset of every partition of topic is past the last
// record in it now. For a topic written in transactions (a processor's output), where waitCaughtUp's lag never
// reaches 0: the commit marker after the last record is never covered by a committed offset.
func (f *fixture) waitCommittedPastRecords(ctx context.Context, group, topic string) {
	f.t.Helper()
	recs, err := kafkatest.ReadCommitted(ctx, f.cluster.BootstrapServers(), topic)
	if err != nil {
		f.t.Fatal(err)
	}
	err = testcontainers.WaitFor(ctx, fmt.Sprintf("group %s to commit every record of %s", group, topic), func(ctx context.Context) (bool, error) {
		committed, err := kafkatest.Committed(ctx, f.cluster.BootstrapServers(), group, topic)
		if err != nil {
			return false, err
		}
		for p, msgs := range recs {
			if len(msgs) > 0 && committed[p] <= int64(msgs[len(msgs)-1].TopicPartition.Offset) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// waitProgress waits until the group's lag is at most lag.
func (f *fixture) waitProgress(ctx context.Context, lag int64) {
	f.t.Helper()
	err := testcontainers.WaitFor(ctx, fmt.Sprintf("lag at most %d", lag), func(ctx context.Context) (bool, error) {
		got, err := kafkatest.Lag(ctx, f.cluster.BootstrapServers(), f.group, []string{f.input})
		return err == nil && got <= lag, err
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// stopAll stops every running instance with SIGTERM and checks each exits 0.
func (f *fixture) stopAll() {
	f.t.Helper()
	f.mu.Lock()
	running := f.running
	f.mu.Unlock()
	for _, in := range running {
		select {
		case <-in.Done():
			continue
		default:
		}
		code, err := in.Stop(45 * time.Second)
		if err != nil {
			f.t.Fatal(err)
		}
		if code != 0 {
			f.t.Fatalf("processor %s exited %d after SIGTERM, want 0", in.Name, code)
		}
	}
}

// verdict reads inputs and outputs (dead letters included) with read_committed.
func (f *fixture) verdict(ctx context.Context, sameValues bool) verify.Report {
	f.t.Helper()
	r, err := verify.Run(ctx, verify.Options{
		Bootstrap: f.cluster.BootstrapServers(), Inputs: []string{f.input}, Outputs: []string{f.output},
		DeadLetterTopic: f.dlq, SameValues: sameValues,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Log(r)
	return r
}
