package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBadConfigExitsTwoNamingTheVariable runs the real binary with each kind of bad configuration: it must stop
// at once with exit code 2 and a message naming the variable. No Kafka is needed: config is checked first.
func TestBadConfigExitsTwoNamingTheVariable(t *testing.T) {
	bin := processorBinary(t)
	valid := map[string]string{
		"PROCESSOR_BROKERS":      "localhost:1",
		"PROCESSOR_INPUT_TOPICS": "in",
		"PROCESSOR_OUTPUT_TOPIC": "out",
	}
	tests := []struct {
		name     string
		set      map[string]string
		unset    string
		variable string
	}{
		{name: "missing brokers", unset: "PROCESSOR_BROKERS", variable: "PROCESSOR_BROKERS"},
		{name: "missing input topics", unset: "PROCESSOR_INPUT_TOPICS", variable: "PROCESSOR_INPUT_TOPICS"},
		{name: "missing output topic", unset: "PROCESSOR_OUTPUT_TOPIC", variable: "PROCESSOR_OUTPUT_TOPIC"},
		{name: "interval not a duration", set: map[string]string{"PROCESSOR_BATCH_INTERVAL": "abc"}, variable: "PROCESSOR_BATCH_INTERVAL"},
		{name: "interval zero", set: map[string]string{"PROCESSOR_BATCH_INTERVAL": "0s"}, variable: "PROCESSOR_BATCH_INTERVAL"},
		{name: "interval beyond transaction timeout", set: map[string]string{"PROCESSOR_BATCH_INTERVAL": "2m"}, variable: "PROCESSOR_BATCH_INTERVAL"},
		{name: "max records not a number", set: map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "many"}, variable: "PROCESSOR_MAX_BATCH_RECORDS"},
		{name: "max records negative", set: map[string]string{"PROCESSOR_MAX_BATCH_RECORDS": "-5"}, variable: "PROCESSOR_MAX_BATCH_RECORDS"},
		{name: "unknown guarantee", set: map[string]string{"PROCESSOR_PROCESSING_GUARANTEE": "exactly_twice"}, variable: "PROCESSOR_PROCESSING_GUARANTEE"},
		{name: "unknown offset reset", set: map[string]string{"PROCESSOR_AUTO_OFFSET_RESET": "middle"}, variable: "PROCESSOR_AUTO_OFFSET_RESET"},
		{name: "output is an input", set: map[string]string{"PROCESSOR_OUTPUT_TOPIC": "in"}, variable: "PROCESSOR_OUTPUT_TOPIC"},
		{name: "dead letters into an input", set: map[string]string{"PROCESSOR_DEAD_LETTER_TOPIC": "in"}, variable: "PROCESSOR_DEAD_LETTER_TOPIC"},
		{name: "property without value", set: map[string]string{"PROCESSOR_KAFKA_PROPERTIES": "linger.ms"}, variable: "PROCESSOR_KAFKA_PROPERTIES"},
		{name: "guarantee property overridden", set: map[string]string{"PROCESSOR_CONSUMER_PROPERTIES": "isolation.level=read_uncommitted"}, variable: "PROCESSOR_CONSUMER_PROPERTIES"},
		{name: "message timeout above transaction timeout", set: map[string]string{"PROCESSOR_PRODUCER_PROPERTIES": "message.timeout.ms=120000"}, variable: "PROCESSOR_PRODUCER_PROPERTIES"},
		{name: "bad de-duplication identity", set: map[string]string{"PROCESSOR_DEDUPE_IDENTITY": "column:id"}, variable: "PROCESSOR_DEDUPE_IDENTITY"},
		{name: "unknown log level", set: map[string]string{"PROCESSOR_LOG_LEVEL": "loud"}, variable: "PROCESSOR_LOG_LEVEL"},
		{name: "misspelt name in a filter", set: map[string]string{"PROCESSOR_FILTER": `value.amount > 100 && vlaue.ok`}, variable: "PROCESSOR_FILTER: line 1, column 23: unknown name vlaue"},
		{name: "route to a topic list it lacks", set: map[string]string{"PROCESSOR_ROUTE": `"x"`}, variable: "PROCESSOR_ROUTE_TOPICS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "PROCESSOR_") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			for k, v := range valid {
				if k != tt.unset {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
			}
			for k, v := range tt.set {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("exit: %v, want exit code 2; stderr:\n%s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.variable) {
				t.Fatalf("message does not name %s:\n%s", tt.variable, stderr.String())
			}
		})
	}
}
