package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eosproc/eosproc/internal/procrun"
)

func TestHelpPrintsEveryVariableAndExitsZero(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit code %d, want %d", code, exitOK)
	}
	for _, v := range []string{"PROCESSOR_BROKERS", "PROCESSOR_BATCH_INTERVAL", "500ms", "PROCESSOR_TEST_FAIL_HEADER"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("help lacks %q", v)
		}
	}
}

// TestBinaryExitCodes runs the built binary as a supervisor would, with each kind of configuration mistake: it
// must stop at once with exit code 2 and a message naming the variable (no Kafka is needed: configuration is
// checked before anything connects), and -h and --version exit 0.
func TestBinaryExitCodes(t *testing.T) {
	bin, err := procrun.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	valid := map[string]string{"PROCESSOR_BROKERS": "localhost:1", "PROCESSOR_INPUT_TOPICS": "in", "PROCESSOR_OUTPUT_TOPIC": "out"}
	tests := []struct {
		name  string
		args  []string
		set   map[string]string
		unset string
		code  int
		want  string // in stdout or stderr
	}{
		{name: "help", args: []string{"-h"}, code: exitOK, want: "PROCESSOR_BROKERS"},
		{name: "version", args: []string{"--version"}, code: exitOK, want: "librdkafka"},
		{name: "an argument", args: []string{"--brokers=x"}, code: exitConfig, want: "processor takes no arguments"},
		{name: "missing brokers", unset: "PROCESSOR_BROKERS", code: exitConfig, want: "PROCESSOR_BROKERS: not set"},
		{name: "missing input topics", unset: "PROCESSOR_INPUT_TOPICS", code: exitConfig, want: "PROCESSOR_INPUT_TOPICS: not set"},
		{name: "missing output topic", unset: "PROCESSOR_OUTPUT_TOPIC", code: exitConfig, want: "PROCESSOR_OUTPUT_TOPIC: not set"},
		{name: "interval not a duration", set: map[string]string{"PROCESSOR_BATCH_INTERVAL": "abc"}, code: exitConfig, want: "PROCESSOR_BATCH_INTERVAL"},
		{name: "interval zero", set: map[string]string{"PROCESSOR_BATCH_INTERVAL": "0s"}, code: exitConfig, want: "PROCESSOR_BATCH_INTERVAL"},
		{name: "interval beyond transaction timeout", set: map[string]string{"PROCESSOR_BATCH_INTERVAL": "2m"}, code: exitConfig, want: "PROCESSOR_BATCH_INTERVAL"},
		{name: "max records not a number", set: map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "many"}, code: exitConfig, want: "PROCESSOR_MAX_BATCH_RECORDS"},
		{name: "max records negative", set: map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "-5"}, code: exitConfig, want: "PROCESSOR_MAX_BATCH_RECORDS"},
		{name: "max records beyond a whole number", set: map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "1000000000000000000000"}, code: exitConfig, want: "PROCESSOR_MAX_BATCH_RECORDS"},
		{name: "unknown guarantee", set: map[string]string{"PROCESSOR_PROCESSING_GUARANTEE": "exactly_twice"}, code: exitConfig, want: "PROCESSOR_PROCESSING_GUARANTEE"},
		{name: "unknown offset reset", set: map[string]string{"PROCESSOR_AUTO_OFFSET_RESET": "middle"}, code: exitConfig, want: "PROCESSOR_AUTO_OFFSET_RESET"},
		{name: "output is an input", set: map[string]string{"PROCESSOR_OUTPUT_TOPIC": "in"}, code: exitConfig, want: "PROCESSOR_OUTPUT_TOPIC"},
		{name: "dead letters into an input", set: map[string]string{"PROCESSOR_DEAD_LETTER_TOPIC": "in"}, code: exitConfig, want: "PROCESSOR_DEAD_LETTER_TOPIC"},
		{name: "property without value", set: map[string]string{"PROCESSOR_KAFKA_PROPERTIES": "linger.ms"}, code: exitConfig, want: "PROCESSOR_KAFKA_PROPERTIES"},
		{name: "guarantee property overridden", set: map[string]string{"PROCESSOR_CONSUMER_PROPERTIES": "isolation.level=read_uncommitted"}, code: exitConfig, want: "PROCESSOR_CONSUMER_PROPERTIES"},
		{name: "owned producer property", set: map[string]string{"PROCESSOR_PRODUCER_PROPERTIES": "linger.ms=50"}, code: exitConfig, want: "PROCESSOR_PRODUCER_PROPERTIES"},
		{name: "unknown librdkafka property", set: map[string]string{"PROCESSOR_KAFKA_PROPERTIES": "no.such.property=1"}, code: exitConfig, want: `PROCESSOR_KAFKA_PROPERTIES: No such configuration property: "no.such.property"`},
		{name: "librdkafka value out of range", set: map[string]string{"PROCESSOR_CONSUMER_PROPERTIES": "fetch.max.bytes=-5"}, code: exitConfig, want: "PROCESSOR_CONSUMER_PROPERTIES"},
		{name: "message timeout above transaction timeout", set: map[string]string{"PROCESSOR_PRODUCER_PROPERTIES": "message.timeout.ms=120000"}, code: exitConfig, want: "PROCESSOR_PRODUCER_PROPERTIES"},
		{name: "transaction timeout beyond the consumer's limit", set: map[string]string{"PROCESSOR_TRANSACTION_TIMEOUT": "13h"}, code: exitConfig, want: "PROCESSOR_TRANSACTION_TIMEOUT"},
		{name: "http address", set: map[string]string{"PROCESSOR_HTTP_ADDR": "notanaddr"}, code: exitConfig, want: "PROCESSOR_HTTP_ADDR"},
		{name: "negative dedupe window", set: map[string]string{"PROCESSOR_DEDUPE_WINDOW": "-1h"}, code: exitConfig, want: "PROCESSOR_DEDUPE_WINDOW"},
		{name: "negative dedupe entries", set: map[string]string{"PROCESSOR_DEDUPE_MAX_ENTRIES": "-5"}, code: exitConfig, want: "PROCESSOR_DEDUPE_MAX_ENTRIES"},
		{name: "rate not a number", set: map[string]string{"PROCESSOR_BACKPRESSURE_INITIAL_RATE": "NaN"}, code: exitConfig, want: "PROCESSOR_BACKPRESSURE_INITIAL_RATE"},
		{name: "brokers without a broker", set: map[string]string{"PROCESSOR_BROKERS": " , "}, code: exitConfig, want: "PROCESSOR_BROKERS"},
		{name: "invalid output topic name", set: map[string]string{"PROCESSOR_OUTPUT_TOPIC": "out put"}, code: exitConfig, want: "PROCESSOR_OUTPUT_TOPIC"},
		{name: "app id naming invalid topics", set: map[string]string{"PROCESSOR_APP_ID": "my/app#1"}, code: exitConfig, want: "PROCESSOR_APP_ID"},
		{name: "regular-expression input", set: map[string]string{"PROCESSOR_INPUT_TOPICS": "^orders.*", "PROCESSOR_OUTPUT_TOPIC": "orders-out"}, code: exitConfig, want: "PROCESSOR_INPUT_TOPICS"},
		{name: "TLS file without a TLS protocol", set: map[string]string{"PROCESSOR_TLS_CA_FILE": "/etc/ssl/certs/ca-certificates.crt"}, code: exitConfig, want: "PROCESSOR_TLS_CA_FILE"},
		{name: "bad de-duplication identity", set: map[string]string{"PROCESSOR_DEDUPE_IDENTITY": "column:id"}, code: exitConfig, want: "PROCESSOR_DEDUPE_IDENTITY"},
		{name: "unknown log level", set: map[string]string{"PROCESSOR_LOG_LEVEL": "loud"}, code: exitConfig, want: "PROCESSOR_LOG_LEVEL"},
		{name: "misspelt name in a filter", set: map[string]string{"PROCESSOR_FILTER": `value.amount > 100 && vlaue.ok`}, code: exitConfig, want: "PROCESSOR_FILTER: line 1, column 23: unknown name vlaue"},
		{name: "route to a topic list it lacks", set: map[string]string{"PROCESSOR_ROUTE": `"x"`}, code: exitConfig, want: "PROCESSOR_ROUTE_TOPICS"},
		{name: "several mistakes at once", set: map[string]string{"PROCESSOR_KAFKA_PROPERTIES": "linger.ms", "PROCESSOR_HTTP_ADDR": "x", "PROCESSOR_OUTPUT_TOPIC": "out put"}, code: exitConfig,
			want: "PROCESSOR_HTTP_ADDR"}, // and the others: checked below
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tt.args...)
			cmd.Env = withoutProcessorVars(os.Environ())
			for k, v := range valid {
				if k != tt.unset {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
			}
			for k, v := range tt.set {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, _ := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != tt.code {
				t.Fatalf("exit code %d, want %d; output:\n%s", got, tt.code, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, out)
			}
			if tt.name == "several mistakes at once" {
				for _, v := range []string{"PROCESSOR_KAFKA_PROPERTIES", "PROCESSOR_OUTPUT_TOPIC"} {
					if !strings.Contains(string(out), v) {
						t.Errorf("output lacks %s: every problem is reported at once:\n%s", v, out)
					}
				}
			}
		})
	}
}

func withoutProcessorVars(environ []string) []string {
	var out []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "PROCESSOR_") {
			out = append(out, kv)
		}
	}
	return out
}

func TestFirstSignalShutsDownAndSecondExitsAtOnce(t *testing.T) {
	sigs := make(chan os.Signal)
	shutdown := make(chan struct{})
	exited := make(chan os.Signal, 1)
	go onSignals(sigs, func() { close(shutdown) }, func(s os.Signal) { exited <- s })

	sigs <- syscall.SIGTERM
	<-shutdown // a second close would panic: shutdown is asked once
	select {
	case s := <-exited:
		t.Fatalf("exited at the first signal (%v), want a clean shutdown first", s)
	default:
	}
	sigs <- os.Interrupt
	if s := <-exited; s != os.Interrupt {
		t.Errorf("exited on %v, want the second signal", s)
	}
}

func TestVersionNamesTheBuild(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit code %d, want %d", code, exitOK)
	}
	for _, want := range []string{"eosproc processor", "commit", "go1.", "librdkafka 2."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--version printed %q, want it to contain %q", out.String(), want)
		}
	}
}
