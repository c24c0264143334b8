package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestInvalidExpressionExitsTwoWithItsPosition(t *testing.T) {
	var out, errOut bytes.Buffer
	env := []string{"PROCESSOR_BROKERS=localhost:9092", "PROCESSOR_INPUT_TOPICS=in", "PROCESSOR_OUTPUT_TOPIC=out",
		`PROCESSOR_FILTER=value.amount > 100 && vlaue.country == "DE"`}
	if code := run(context.Background(), nil, env, &out, &errOut); code != exitConfig {
		t.Fatalf("exit code %d, want %d", code, exitConfig)
	}
	if want := "PROCESSOR_FILTER: line 1, column 23: unknown name vlaue"; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q lacks %q", errOut.String(), want)
	}
}
