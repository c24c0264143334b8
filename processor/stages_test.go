package processor

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/eosproc/eosproc/stream"
)

func TestStageVariablesBuildTheTransform(t *testing.T) {
	cfg, err := LoadConfig(with(minimal,
		`PROCESSOR_FILTER=value.status == "paid"`,
		`PROCESSOR_MAP={"id": value.id, "cents": int(round(value.amount * 100))}`,
		`PROCESSOR_KEY=string(value.id)`,
		`PROCESSOR_HEADERS_SET={"kind": "order"}`,
		`PROCESSOR_HEADERS_DROP=trace,debug`,
		`PROCESSOR_ROUTE=value.cents > 10000 ? "large" : "out"`,
		`PROCESSOR_ROUTE_TOPICS=large`,
	))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"trace", "debug"}; !reflect.DeepEqual(cfg.HeadersDrop, want) {
		t.Errorf("HeadersDrop = %q, want %q", cfg.HeadersDrop, want)
	}
	transform, err := cfg.stagesTransform()
	if err != nil || transform == nil {
		t.Fatalf("transform %v, err %v", transform, err)
	}
	tests := []struct {
		value, topic, outValue string
		outputs                int
	}{
		{`{"id": 7, "amount": 250, "status": "paid"}`, "large", `{"cents":25000,"id":7}`, 1},
		// The output topic is a valid route without being listed.
		{`{"id": 8, "amount": 3, "status": "paid"}`, "out", `{"cents":300,"id":8}`, 1},
		{`{"id": 9, "amount": 250, "status": "open"}`, "", "", 0},
	}
	for _, tt := range tests {
		in := stream.Record{Topic: "a", Offset: 5, Value: []byte(tt.value), Headers: []stream.Header{{Key: "trace", Value: []byte("x")}}}
		out, err := transform(context.Background(), in)
		if err != nil {
			t.Fatalf("%s: %v", tt.value, err)
		}
		if len(out) != tt.outputs {
			t.Fatalf("%s: %d outputs, want %d", tt.value, len(out), tt.outputs)
		}
		if tt.outputs == 1 && (out[0].Topic != tt.topic || string(out[0].Value) != tt.outValue || len(out[0].Headers) != 2) {
			t.Errorf("%s: got topic %q value %s headers %q; want %q, %s, kind and source", tt.value, out[0].Topic, out[0].Value, out[0].Headers, tt.topic, tt.outValue)
		}
	}
}

func TestNoStageVariablesMeansNoStages(t *testing.T) {
	cfg, err := LoadConfig(minimal)
	if err != nil {
		t.Fatal(err)
	}
	if tr, err := cfg.stagesTransform(); tr != nil || err != nil {
		t.Errorf("transform %v, err %v; want none", tr, err)
	}
}

func TestBadStageConfigNamesTheVariableAndPosition(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"misspelt name in filter", []string{`PROCESSOR_FILTER=value.amount > 1 && vlaue.ok`},
			[]string{"PROCESSOR_FILTER: line 1, column 21: unknown name vlaue", "\n      value.amount > 1 && vlaue.ok\n" + strings.Repeat(" ", 26) + "^"}},
		{"filter not boolean", []string{`PROCESSOR_FILTER=key + "x"`}, []string{"PROCESSOR_FILTER: line 1, column 1: expected bool, but got string"}},
		{"syntax error in map, line 2", []string{"PROCESSOR_MAP={\n\"a\": value.a +}"}, []string{"PROCESSOR_MAP: line 2, column 15: unexpected token"}},
		{"clock not available", []string{`PROCESSOR_KEY=string(now())`}, []string{"PROCESSOR_KEY: line 1, column 8: unknown name now"}},
		{"headers", []string{`PROCESSOR_HEADERS_SET={"a": headrs.b}`}, []string{"PROCESSOR_HEADERS_SET: line 1, column 7: unknown name headrs"}},
		{"route", []string{`PROCESSOR_ROUTE=value.region ?`, "PROCESSOR_ROUTE_TOPICS=x"}, []string{"PROCESSOR_ROUTE: line 1, column"}},
		{"several at once", []string{`PROCESSOR_KEY=kye`, `PROCESSOR_MAP=valeu`},
			[]string{"PROCESSOR_KEY: line 1, column 1: unknown name kye", "PROCESSOR_MAP: line 1, column 1: unknown name valeu"}},
		{"route without topics", []string{`PROCESSOR_ROUTE="x"`}, []string{"PROCESSOR_ROUTE_TOPICS: not set; PROCESSOR_ROUTE needs the topics"}},
		{"topics without route", []string{`PROCESSOR_ROUTE_TOPICS=x`}, []string{"PROCESSOR_ROUTE_TOPICS: set without PROCESSOR_ROUTE"}},
		{"route to an input", []string{`PROCESSOR_ROUTE="a"`, "PROCESSOR_ROUTE_TOPICS=x,a"}, []string{`PROCESSOR_ROUTE_TOPICS: "a" is also an input topic`}},
		{"route to dead letters", []string{`PROCESSOR_ROUTE="x"`, "PROCESSOR_ROUTE_TOPICS=eosproc-dlq"}, []string{`PROCESSOR_ROUTE_TOPICS: "eosproc-dlq" is the dead-letter topic`}},
		{"source header dropped", []string{"PROCESSOR_HEADERS_DROP=x, " + stream.SourceHeader}, []string{`PROCESSOR_HEADERS_DROP: "eosproc.source" cannot be dropped`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(with(minimal, tt.env...))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error\n%v\nwant it to contain %q", err, want)
				}
			}
		})
	}
}

func TestRunRefusesStagesBesideItsOwnTransform(t *testing.T) {
	cfg, err := LoadConfig(with(minimal, "PROCESSOR_FILTER=true"))
	if err != nil {
		t.Fatal(err)
	}
	err = (&Processor{Config: cfg, Transform: stream.Identity, NoHTTP: true}).Run(context.Background())
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "the Processor has its own Transform") {
		t.Errorf("err = %v, want a *ConfigError about the two transforms", err)
	}
}
