package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eosproc/eosproc/stream"
)

func record(value string, headers ...stream.Header) stream.Record {
	return stream.Record{
		Topic: "orders", Partition: 3, Offset: 42, Key: []byte("k1"), Value: []byte(value), Headers: headers,
		Timestamp: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
	}
}

const order = `{"id": 9007199254740993, "amount": 120.5, "country": "DE", "note": "<a&b>", "items": [{"sku": "x"}]}`

func mustCompile(t *testing.T, cfg Config) *Pipeline {
	t.Helper()
	p, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func one(t *testing.T, p *Pipeline, in stream.Record) stream.Record {
	t.Helper()
	out, err := p.Transform(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("%d outputs, want 1", len(out))
	}
	return out[0]
}

func header(r stream.Record, name string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == name {
			return string(h.Value), true
		}
	}
	return "", false
}

func TestFilterKeepsOnlyMatchingRecords(t *testing.T) {
	tests := []struct {
		filter string
		keep   bool
	}{
		{`value.amount > 100 && value.country == "DE"`, true},
		{`value.amount > 1000`, false},
		{`key == "k1" && topic == "orders" && partition == 3 && offset == 42`, true},
		{`timestamp.Year() == 2026`, true},
		{`headers["type"] == "order"`, true},
		{`"missing" in headers`, false},
		{`any(value.items, .sku == "x")`, true},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			p := mustCompile(t, Config{Filter: tt.filter})
			out, err := p.Transform(context.Background(), record(order, stream.Header{Key: "type", Value: []byte("order")}))
			if err != nil {
				t.Fatal(err)
			}
			if got := len(out) == 1; got != tt.keep {
				t.Errorf("kept = %v, want %v", got, tt.keep)
			}
		})
	}
}

func TestMapWritesTheNewValueAsJSON(t *testing.T) {
	p := mustCompile(t, Config{Map: `{"id": value.id, "cents": int(round(value.amount * 100)), "country": lower(value.country), "note": value.note}`})
	got := one(t, p, record(order))
	// Keys sorted, integers exact beyond 2^53, no HTML escaping.
	want := `{"cents":12050,"country":"de","id":9007199254740993,"note":"<a&b>"}`
	if string(got.Value) != want {
		t.Errorf("value\n got %s\nwant %s", got.Value, want)
	}
	if string(got.Key) != "k1" || !got.Timestamp.Equal(record("").Timestamp) {
		t.Errorf("key %q, timestamp %s: want the input's", got.Key, got.Timestamp)
	}
}

func TestKeyYieldsTheOutputKey(t *testing.T) {
	tests := []struct {
		expr, want string
		null       bool
	}{
		{`value.country`, "DE", false},
		{`value.id`, "9007199254740993", false},
		{`value.amount`, "120.5", false},
		{`key + "-" + value.country`, "k1-DE", false},
		{`nil`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got := one(t, mustCompile(t, Config{Key: tt.expr}), record(order))
			if string(got.Key) != tt.want || (got.Key == nil) != tt.null {
				t.Errorf("key = %q (nil %v), want %q (nil %v)", got.Key, got.Key == nil, tt.want, tt.null)
			}
		})
	}
}

func TestHeadersAreSetDroppedAndTheSourceKept(t *testing.T) {
	p := mustCompile(t, Config{
		HeadersSet:  `{"region": value.country, "amount": value.amount, "trace": nil, "type": "v2"}`,
		HeadersDrop: []string{"secret", " "},
	})
	in := record(order,
		stream.Header{Key: "type", Value: []byte("v1")},
		stream.Header{Key: "secret", Value: []byte("s")},
		stream.Header{Key: "trace", Value: []byte("t")},
		stream.Header{Key: "keep", Value: []byte("me")},
		stream.Header{Key: stream.SourceHeader, Value: []byte("upstream/0/1")},
	)
	got := one(t, p, in).Headers
	want := []stream.Header{
		{Key: "keep", Value: []byte("me")},
		{Key: "amount", Value: []byte("120.5")},
		{Key: "region", Value: []byte("DE")},
		{Key: "type", Value: []byte("v2")},
		{Key: stream.SourceHeader, Value: []byte("orders/3/42")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("headers\n got %q\nwant %q", got, want)
	}
}

func TestRouteChoosesAnAllowedTopic(t *testing.T) {
	p := mustCompile(t, Config{Route: `value.amount > 100 ? "big" : "small"`, RouteTopics: []string{"big", "small"}})
	if got := one(t, p, record(order)); got.Topic != "big" {
		t.Errorf("topic = %q, want big", got.Topic)
	}
	if got := one(t, p, record(`{"amount": 3}`)); got.Topic != "small" {
		t.Errorf("topic = %q, want small", got.Topic)
	}
}

func TestRecordsTheStagesCannotHandleAreErrors(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		value string
		want  string
		stage string // with class, what the dead letter's headers say
		class string
	}{
		{"malformed JSON", Config{Filter: `value.amount > 1`}, `{"amount": `, "value is not JSON: unexpected end of JSON input", "decode", "bad_input"},
		{"trailing data", Config{Map: `value`}, `{"a":1} x`, "value is not JSON: data after the JSON value", "decode", "bad_input"},
		{"empty value", Config{Key: `value.id`}, ``, "value is not JSON: empty value", "decode", "bad_input"},
		{"runtime error with position", Config{Filter: `value.amount > 1`}, `{"amount": "many"}`, "filter: line 1, column 14: invalid operation: string > int", "filter", "expression"},
		{"filter not boolean", Config{Filter: `value.flag`}, `{"flag": "yes"}`, "filter: line 1", "filter", "expression"},
		{"member of nil", Config{Map: `value.customer.name`}, `{}`, "map: line 1", "map", "expression"},
		{"not representable in JSON", Config{Map: `{"r": 1 / 0}`}, `{}`, "map: the new value cannot be written as JSON", "map", "bad_result"},
		{"key is a map", Config{Key: `value`}, `{"a": 1}`, "key: yields a map; want a string", "key", "bad_result"},
		{"header value is a list", Config{HeadersSet: `{"items": value.items}`}, order, `headers: header "items": yields a list`, "headers", "bad_result"},
		{"headers not a map", Config{HeadersSet: `value.country`}, order, "headers: yields a string; want a map", "headers", "bad_result"},
		{"source header set", Config{HeadersSet: `{"eosproc.source": "x"}`}, order, `header "eosproc.source" cannot be set`, "headers", "bad_result"},
		{"route outside the list", Config{Route: `value.country`, RouteTopics: []string{"a", "b"}}, order, `route: yields "DE", which is not one of the allowed topics (a,b)`, "route", "bad_result"},
		{"route not a string", Config{Route: `value.amount`, RouteTopics: []string{"a"}}, order, "route: yields a number, which is not one of the allowed topics", "route", "bad_result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := mustCompile(t, tt.cfg).Transform(context.Background(), record(tt.value))
			if err == nil {
				t.Fatalf("no error; outputs %v", out)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			var re *stream.RecordError
			if !errors.As(err, &re) || re.Stage != tt.stage || re.Class != tt.class {
				t.Errorf("error %#v: want a stream.RecordError of stage %q, class %q", err, tt.stage, tt.class)
			}
		})
	}
}

func TestValueIsParsedOnlyWhenAStageReadsIt(t *testing.T) {
	p := mustCompile(t, Config{Key: `headers["tenant"] + "/" + key`, Route: `"a"`, RouteTopics: []string{"a"}})
	if p.needValue {
		t.Fatal("no expression reads value, yet the pipeline would parse it")
	}
	got := one(t, p, record("not JSON at all", stream.Header{Key: "tenant", Value: []byte("t1")}))
	if string(got.Value) != "not JSON at all" || string(got.Key) != "t1/k1" {
		t.Errorf("value %q key %q: want the value untouched and key t1/k1", got.Value, got.Key)
	}
}

func TestValueReachedThroughEnvIsParsed(t *testing.T) {
	got := one(t, mustCompile(t, Config{Key: `$env["value"].country + $env.headers.type`}), record(order, stream.Header{Key: "type", Value: []byte("x")}))
	if string(got.Key) != "DEx" {
		t.Errorf("key %q, want DEx", got.Key)
	}
}

func TestLaterStagesSeeEarlierStagesOutput(t *testing.T) {
	p := mustCompile(t, Config{
		Map:         `{"customer": value.id, "total": value.amount}`,
		Key:         `value.customer`,
		HeadersSet:  `{"k": key}`,
		Route:       `headers.k == "9007199254740993" && value.total > 100 ? "vip" : "rest"`,
		RouteTopics: []string{"vip", "rest"},
	})
	got := one(t, p, record(order))
	if got.Topic != "vip" || string(got.Key) != "9007199254740993" {
		t.Errorf("topic %q key %q: want vip and the customer id", got.Topic, got.Key)
	}
}

func TestNoStageCopiesTheRecordWithItsSource(t *testing.T) {
	got := one(t, mustCompile(t, Config{}), record("raw", stream.Header{Key: "h", Value: []byte("1")}))
	if string(got.Value) != "raw" || string(got.Key) != "k1" || got.Topic != "" {
		t.Errorf("got %+v, want the input copied to the default output topic", got)
	}
	if src, _ := header(got, stream.SourceHeader); src != "orders/3/42" {
		t.Errorf("source header %q, want orders/3/42", src)
	}
}

func TestSameInputGivesTheSameOutput(t *testing.T) {
	p := mustCompile(t, Config{HeadersSet: `{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}`, Map: `{"x": 1, "y": 2, "z": 3}`})
	first := one(t, p, record(order))
	for range 20 {
		if again := one(t, p, record(order)); !reflect.DeepEqual(again, first) {
			t.Fatalf("outputs differ:\n%+v\n%+v", first, again)
		}
	}
}

func TestBadExpressionsFailToCompileWithTheirPosition(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // each ExprError's Error(), in stage order
	}{
		{"misspelt name", Config{Filter: `value.amount > 100 && vlaue.country == "DE"`},
			[]string{"filter: line 1, column 23: unknown name vlaue"}},
		{"syntax error on line 2", Config{Map: "{\n  \"a\": value.a,,\n}"},
			[]string{"map: line 2, column 16: unexpected token Operator(\",\")"}},
		{"filter not boolean", Config{Filter: `key`}, []string{"filter: line 1, column 1: expected bool, but got string"}},
		{"clock disabled", Config{Key: `string(now())`}, []string{"key: line 1, column 8: unknown name now"}},
		{"every error at once", Config{Key: `kye`, Route: `"a" +`, RouteTopics: []string{"a"}},
			[]string{"key: line 1, column 1: unknown name kye", "route: line 1, column 5: unexpected token EOF"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.cfg)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want Errors", err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
				if e.Snippet == "" || !strings.HasSuffix(e.Snippet, "^") {
					t.Errorf("snippet %q: want the line and a caret", e.Snippet)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSnippetPointsAtTheError(t *testing.T) {
	_, err := Compile(Config{Filter: `value.amount > 100 && vlaue.country == "DE"`})
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatal(err)
	}
	lines := strings.Split(errs[0].Snippet, "\n")
	if len(lines) != 2 || strings.Index(lines[1], "^") != strings.Index(lines[0], "vlaue") {
		t.Errorf("snippet\n%s\nwant the caret under vlaue", errs[0].Snippet)
	}
}

func TestConfigMistakesBesideExpressions(t *testing.T) {
	if _, err := Compile(Config{HeadersDrop: []string{stream.SourceHeader}}); err == nil || !strings.Contains(err.Error(), "cannot be dropped") {
		t.Errorf("dropping the source header: err = %v", err)
	}
	if _, err := Compile(Config{Route: `"a"`}); err == nil || !strings.Contains(err.Error(), "list of topics") {
		t.Errorf("route without topics: err = %v", err)
	}
}

func FuzzDecodeJSONAgreesWithEncodingJSON(f *testing.F) {
	for _, s := range []string{order, benchValue, `[]`, `{}`, `"a\u00e9\n"`, `-0.5e-3`, `1e999`, `[1,]`, `{"a" 1}`, "\"\xff\"",
		`"\ud83d\ude00"`, `tru`, `nul`, `01`, `-`, `1.`, `  7  `, `{"a":{"b":[true,false,null]}}`, `"\"`, `123456789012345678901`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeJSON(b)
		var want any
		werr := json.Unmarshal(b, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: decodeJSON error %v, encoding/json error %v", b, err, werr)
		}
		if err != nil {
			return
		}
		// Compare through encoding/json's view: numbers as float64.
		g, _ := json.Marshal(got)
		var gotStd any
		if err := json.Unmarshal(g, &gotStd); err != nil {
			t.Fatalf("%q: re-read: %v", b, err)
		}
		if !reflect.DeepEqual(gotStd, want) {
			t.Fatalf("%q: decodeJSON %#v, encoding/json %#v", b, gotStd, want)
		}
	})
}

// TestDocExamples holds docs/transforms.md to what the stages do.
func TestDocExamples(t *testing.T) {
	in := stream.Record{
		Topic: "orders", Partition: 2, Offset: 17, Key: []byte("c-42"), Headers: []stream.Header{{Key: "trace", Value: []byte("t-9")}},
		Value: []byte(`{"id": 9007199254740993, "customer": {"id": "c-42", "country": "DE"}, "amount": 129.95, "status": "paid",
 "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}]}`),
	}
	p := mustCompile(t, Config{
		Filter: `value.status == "paid" && value.amount > 100`,
		Map: `{"order": value.id, "customer": value.customer.id, "cents": int(round(value.amount * 100)),
                "lines": len(value.items), "skus": map(value.items, .sku)}`,
		Key:         `value.customer`,
		HeadersSet:  `{"customer": value.customer, "schema": "order-v2"}`,
		HeadersDrop: []string{"trace"},
		Route:       `value.cents >= 100000 ? "orders-large" : "orders-clean"`,
		RouteTopics: []string{"orders-large", "orders-clean"},
	})
	got := one(t, p, in)
	want := stream.Record{
		Topic: "orders-clean", Key: []byte("c-42"),
		Value: []byte(`{"cents":12995,"customer":"c-42","lines":2,"order":9007199254740993,"skus":["A-1","B-7"]}`),
		Headers: []stream.Header{{Key: "customer", Value: []byte("c-42")}, {Key: "schema", Value: []byte("order-v2")},
			{Key: stream.SourceHeader, Value: []byte("orders/2/17")}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	reasons := []struct {
		cfg   Config
		value string
		want  string
	}{
		{Config{Filter: `value.a`}, `{"a": x}`, "value is not JSON: invalid character 'x' at byte 6, want a value"},
		{Config{Map: `{"r": 1 / 0}`}, `{}`, "map: the new value cannot be written as JSON: json: unsupported value: +Inf"},
		{Config{Route: `"orders-xl"`, RouteTopics: []string{"orders-large", "orders-clean"}}, `{}`,
			`route: yields "orders-xl", which is not one of the allowed topics (orders-clean,orders-large)`},
	}
	for _, r := range reasons {
		_, err := mustCompile(t, r.cfg).Transform(context.Background(), record(r.value))
		if err == nil || err.Error() != r.want {
			t.Errorf("reason %v, want %q", err, r.want)
		}
	}
}
