package stream

import (
	"context"
	"testing"
	"time"
)

func TestIdentityKeepsTheRecordAndNamesItsSource(t *testing.T) {
	in := Record{Topic: "in", Partition: 2, Offset: 41, Key: []byte("k"), Value: []byte("v"),
		Headers: []Header{{Key: "h", Value: []byte("x")}}, Timestamp: time.Unix(100, 0)}
	out, err := Identity(context.Background(), in)
	if err != nil || len(out) != 1 {
		t.Fatalf("Identity = %v, %v; want one record", out, err)
	}
	o := out[0]
	if o.Topic != "" || string(o.Key) != "k" || string(o.Value) != "v" || !o.Timestamp.Equal(in.Timestamp) {
		t.Errorf("output %+v does not keep key, value and timestamp, or overrides the topic", o)
	}
	if len(o.Headers) != 2 || o.Headers[0].Key != "h" || o.Headers[1].Key != SourceHeader || string(o.Headers[1].Value) != "in/2/41" {
		t.Errorf("headers = %+v, want the input's plus %s=in/2/41", o.Headers, SourceHeader)
	}
	if len(in.Headers) != 1 {
		t.Errorf("Identity changed the input's headers")
	}
}
