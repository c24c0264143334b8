package main

import (
	"context"
	"testing"

	"github.com/eosproc/eosproc/stream"
)

func TestExplodeGivesOneRecordPerItem(t *testing.T) {
	in := stream.Record{Topic: "orders", Offset: 9, Value: []byte(`{"id": "o-1", "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]}`)}
	out, err := explode(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ key, value string }{
		{"A", `{"order":"o-1","line":1,"sku":"A","qty":2}`},
		{"B", `{"order":"o-1","line":2,"sku":"B","qty":1}`},
	}
	if len(out) != len(want) {
		t.Fatalf("%d outputs, want %d", len(out), len(want))
	}
	for i, r := range out {
		if string(r.Value) != want[i].value || string(r.Key) != want[i].key || string(r.Headers[0].Value) != "orders/0/9" {
			t.Errorf("output %d: key %q value %s headers %q", i, r.Key, r.Value, r.Headers)
		}
	}
}

func TestExplodeRefusesWhatItCannotSplit(t *testing.T) {
	for _, v := range []string{`not json`, `{"id": "o-2", "items": []}`} {
		if _, err := explode(context.Background(), stream.Record{Value: []byte(v)}); err == nil {
			t.Errorf("%s: no error, want the record dead-lettered", v)
		}
	}
}
