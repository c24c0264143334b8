package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eosproc/eosproc/internal/procrun"
	"github.com/eosproc/eosproc/processor"
)

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
		{name: "help", args: []string{"-h"}, code: processor.ExitOK, want: "PROCESSOR_BROKERS"},
		{name: "version", args: []string{"--version"}, code: processor.ExitOK, want: "librdkafka"},
		{name: "an argument", args: []string{"--brokers=x"}, code: processor.ExitConfig, want: "processor takes no arguments"},
		{name: "missing brokers", unset: "PROCESSOR_BROKERS", code: processor.ExitConfig, want: "PROCESSOR_BROKERS: not set"},
		{name: "missing input topics", unset: "PROCESSOR_INPUT_TOPICS", code: processor.ExitConfig, want: "PROCESSOR_INPUT_TOPICS: not set"},
		{name: "missing output topic", unset: "PROCESSOR_OUTPUT_TOPIC", code: processor.ExitConfig, want: "PROCESSOR_OUTPUT_TOPIC: not set"},
		{name: "interval not a duration", set: map[string]string{"PROCESSOR_BATCH_INTERVAL": "abc"}, code: processor.ExitConfig, want: "PROCESSOR_BATCH_INTERVAL"},
		{name: "interval zero", set: map[string]string{"PROCESSOR_BATCH_INTERVAL": "0s"}, code: processor.ExitConfig, want: "PROCESSOR_BATCH_INTERVAL"},
		{name: "interval beyond transaction timeout", set: map[string]string{"PROCESSOR_BATCH_INTERVAL": "2m"}, code: processor.ExitConfig, want: "PROCESSOR_BATCH_INTERVAL"},
		{name: "batch records zero", set: map[string]string{"PROCESSOR_BATCH_RECORDS": "0"}, code: processor.ExitConfig, want: `PROCESSOR_BATCH_RECORDS="0": must be above zero`},
		{name: "batch records negative", set: map[string]string{"PROCESSOR_BATCH_RECORDS": "-5"}, code: processor.ExitConfig, want: "PROCESSOR_BATCH_RECORDS"},
		{name: "batch records not a number", set: map[string]string{"PROCESSOR_BATCH_RECORDS": "lots"}, code: processor.ExitConfig, want: "PROCESSOR_BATCH_RECORDS"},
		{name: "max records not a number", set: map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "many"}, code: processor.ExitConfig, want: "PROCESSOR_MAX_BATCH_RECORDS"},
		{name: "max records negative", set: map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "-5"}, code: processor.ExitConfig, want: "PROCESSOR_MAX_BATCH_RECORDS"},
		{name: "max records beyond a whole number", set: map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "1000000000000"}, code: processor.ExitConfig, want: "up to 2147483647"},
		{name: "max records beyond the cap", set: map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "2000000000"}, code: processor.ExitConfig, want: "PROCESSOR_MAX_BATCH_RECORDS: 2000000000: at most 1000000"},
		{name: "unknown guarantee", set: map[string]string{"PROCESSOR_PROCESSING_GUARANTEE": "exactly_twice"}, code: processor.ExitConfig, want: "PROCESSOR_PROCESSING_GUARANTEE"},
		{name: "unknown errors tolerance", set: map[string]string{"PROCESSOR_ERRORS_TOLERANCE": "some"}, code: processor.ExitConfig, want: "PROCESSOR_ERRORS_TOLERANCE"},
		{name: "unknown offset reset", set: map[string]string{"PROCESSOR_AUTO_OFFSET_RESET": "middle"}, code: processor.ExitConfig, want: "PROCESSOR_AUTO_OFFSET_RESET"},
		{name: "output is an input", set: map[string]string{"PROCESSOR_OUTPUT_TOPIC": "in"}, code: processor.ExitConfig, want: "PROCESSOR_OUTPUT_TOPIC"},
		{name: "dead letters into an input", set: map[string]string{"PROCESSOR_DEAD_LETTER_TOPIC": "in"}, code: processor.ExitConfig, want: "PROCESSOR_DEAD_LETTER_TOPIC"},
		{name: "property without value", set: map[string]string{"PROCESSOR_KAFKA_PROPERTIES": "linger.ms"}, code: processor.ExitConfig, want: "PROCESSOR_KAFKA_PROPERTIES"},
		{name: "guarantee property overridden", set: map[string]string{"PROCESSOR_CONSUMER_PROPERTIES": "isolation.level=read_uncommitted"}, code: processor.ExitConfig, want: "PROCESSOR_CONSUMER_PROPERTIES"},
		{name: "owned producer property", set: map[string]string{"PROCESSOR_PRODUCER_PROPERTIES": "linger.ms=50"}, code: processor.ExitConfig, want: "PROCESSOR_PRODUCER_PROPERTIES"},
		{name: "unknown librdkafka property", set: map[string]string{"PROCESSOR_KAFKA_PROPERTIES": "no.such.property=1"}, code: processor.ExitConfig, want: `PROCESSOR_KAFKA_PROPERTIES: No such configuration property: "no.such.property"`},
		// Each property is valid, together they are not: only creating the client tells (it was exit 1).
		{name: "librdkafka properties that do not go together", set: map[string]string{"PROCESSOR_CONSUMER_PROPERTIES": "fetch.max.bytes=1000"}, code: processor.ExitConfig, want: "PROCESSOR_CONSUMER_PROPERTIES: librdkafka refused the consumer's configuration: `fetch.max.bytes` must be >= `message.max.bytes`"},
		{name: "librdkafka value out of range", set: map[string]string{"PROCESSOR_CONSUMER_PROPERTIES": "fetch.max.bytes=-5"}, code: processor.ExitConfig, want: "PROCESSOR_CONSUMER_PROPERTIES"},
		{name: "message timeout above transaction timeout", set: map[string]string{"PROCESSOR_PRODUCER_PROPERTIES": "message.timeout.ms=120000"}, code: processor.ExitConfig, want: "PROCESSOR_PRODUCER_PROPERTIES"},
		{name: "transaction timeout beyond the consumer's limit", set: map[string]string{"PROCESSOR_TRANSACTION_TIMEOUT": "13h"}, code: processor.ExitConfig, want: "PROCESSOR_TRANSACTION_TIMEOUT"},
		{name: "http address", set: map[string]string{"PROCESSOR_HTTP_ADDR": "notanaddr"}, code: processor.ExitConfig, want: "PROCESSOR_HTTP_ADDR"},
		{name: "negative dedupe window", set: map[string]string{"PROCESSOR_DEDUPE_WINDOW": "-1h"}, code: processor.ExitConfig, want: "PROCESSOR_DEDUPE_WINDOW"},
		{name: "negative dedupe entries", set: map[string]string{"PROCESSOR_DEDUPE_MAX_ENTRIES": "-5"}, code: processor.ExitConfig, want: "PROCESSOR_DEDUPE_MAX_ENTRIES"},
		{name: "rate not a number", set: map[string]string{"PROCESSOR_BACKPRESSURE_INITIAL_RATE": "NaN"}, code: processor.ExitConfig, want: "PROCESSOR_BACKPRESSURE_INITIAL_RATE"},
		{name: "brokers without a broker", set: map[string]string{"PROCESSOR_BROKERS": " , "}, code: processor.ExitConfig, want: "PROCESSOR_BROKERS"},
		{name: "invalid output topic name", set: map[string]string{"PROCESSOR_OUTPUT_TOPIC": "out put"}, code: processor.ExitConfig, want: "PROCESSOR_OUTPUT_TOPIC"},
		{name: "app id naming invalid topics", set: map[string]string{"PROCESSOR_APP_ID": "my/app#1"}, code: processor.ExitConfig, want: "PROCESSOR_APP_ID"},
		{name: "regular-expression input", set: map[string]string{"PROCESSOR_INPUT_TOPICS": "^orders.*", "PROCESSOR_OUTPUT_TOPIC": "orders-out"}, code: processor.ExitConfig, want: "PROCESSOR_INPUT_TOPICS"},
		{name: "TLS file without a TLS protocol", set: map[string]string{"PROCESSOR_TLS_CA_FILE": "/etc/ssl/certs/ca-certificates.crt"}, code: processor.ExitConfig, want: "PROCESSOR_TLS_CA_FILE"},
		{name: "bad de-duplication identity", set: map[string]string{"PROCESSOR_DEDUPE_IDENTITY": "column:id"}, code: processor.ExitConfig, want: "PROCESSOR_DEDUPE_IDENTITY"},
		{name: "unknown log level", set: map[string]string{"PROCESSOR_LOG_LEVEL": "loud"}, code: processor.ExitConfig, want: "PROCESSOR_LOG_LEVEL"},
		{name: "misspelt name in a filter", set: map[string]string{"PROCESSOR_FILTER": `value.amount > 100 && vlaue.ok`}, code: processor.ExitConfig, want: "PROCESSOR_FILTER: line 1, column 23: unknown name vlaue"},
		{name: "route to a topic list it lacks", set: map[string]string{"PROCESSOR_ROUTE": `"x"`}, code: processor.ExitConfig, want: "PROCESSOR_ROUTE_TOPICS"},
		{name: "several mistakes at once", set: map[string]string{"PROCESSOR_KAFKA_PROPERTIES": "linger.ms", "PROCESSOR_HTTP_ADDR": "x", "PROCESSOR_OUTPUT_TOPIC": "out put"}, code: processor.ExitConfig,
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
