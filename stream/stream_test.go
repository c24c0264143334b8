package stream

import (
	"context"
	"reflect"
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

// A chain of processors must leave one source header per record, naming the last hop's input, or a reader
// matching outputs to inputs would follow the first processor's.
func TestIdentityReplacesAnUpstreamSourceHeader(t *testing.T) {
	in := Record{Topic: "mid", Partition: 0, Offset: 7,
		Headers: []Header{{Key: SourceHeader, Value: []byte("upstream/1/3")}, {Key: "h", Value: []byte("x")}}}
	out, err := Identity(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var sources []string
	for _, h := range out[0].Headers {
		if h.Key == SourceHeader {
			sources = append(sources, string(h.Value))
		}
	}
	if len(sources) != 1 || sources[0] != "mid/0/7" || len(out[0].Headers) != 2 {
		t.Errorf("headers %+v: want h and one %s=mid/0/7", out[0].Headers, SourceHeader)
	}
}

func TestIdentityOfARecordWithoutHeaders(t *testing.T) {
	long := "a-topic-name-longer-than-thirty-one-bytes"
	for _, topic := range []string{"in", long} {
		in := Record{Topic: topic, Partition: 2147483647, Offset: 9223372036854775807, Key: []byte("k"), Value: []byte("v"),
			Timestamp: time.Unix(100, 0)}
		out, err := Identity(context.Background(), in)
		if err != nil || len(out) != 1 {
			t.Fatalf("Identity = %v, %v; want one record", out, err)
		}
		o := out[0]
		want := topic + "/2147483647/9223372036854775807"
		if string(o.Key) != "k" || string(o.Value) != "v" || len(o.Headers) != 1 || o.Headers[0].Key != SourceHeader ||
			string(o.Headers[0].Value) != want {
			t.Errorf("output %+v, want key k, value v and %s=%s", o, SourceHeader, want)
		}
	}
}

// The identity transform runs once per record: two allocations for an input without headers (the returned
// record, and its header with the source's bytes), whatever the topic name's length up to the fast path's limit.
func TestIdentityAllocatesTwicePerRecord(t *testing.T) {
	in := Record{Topic: "a-topic-name-of-thirty-nine-bytes-long", Partition: 11, Offset: 123456789012, Value: []byte("v")}
	if n := len(in.Source()); n > len(sourceHeader{}.source) {
		t.Fatalf("test record's source is %d bytes, beyond the fast path's %d", n, len(sourceHeader{}.source))
	}
	ctx := context.Background()
	if allocs := testing.AllocsPerRun(100, func() { _, _ = Identity(ctx, in) }); allocs != 2 {
		t.Errorf("Identity allocates %v times per record, want 2", allocs)
	}
}

// IdentityWriter's outputs are Identity's, over more records than one block of source headers holds, with and
// without headers and with a source too long for a block's slot; an input without headers costs no allocation
// of its own, only a share of its block's.
func TestIdentityWriterWritesWhatIdentityDoes(t *testing.T) {
	long := "a-topic-name-far-longer-than-the-fifty-six-bytes-a-slot-holds"
	var w IdentityWriter
	for i := range 3*identityBlock + 7 {
		in := Record{Topic: "in", Partition: int32(i % 6), Offset: int64(i), Key: []byte("k"), Value: []byte("v"),
			Timestamp: time.UnixMilli(int64(i))}
		switch i % 5 {
		case 1:
			in.Headers = []Header{{Key: "h", Value: []byte("x")}, {Key: SourceHeader, Value: []byte("up/0/1")}}
		case 2:
			in.Topic = long
		}
		want, _ := Identity(context.Background(), in)
		got := w.Output(in)
		if !reflect.DeepEqual(got, want[0]) {
			t.Fatalf("record %d: IdentityWriter wrote %+v, Identity %+v", i, got, want[0])
		}
	}
	in := Record{Topic: "in", Partition: 1, Offset: 5, Value: []byte("v")}
	if allocs := testing.AllocsPerRun(10*identityBlock, func() { _ = w.Output(in) }); allocs > 0.01 {
		t.Errorf("IdentityWriter allocates %v times per record, want one block per %d records", allocs, identityBlock)
	}
}
