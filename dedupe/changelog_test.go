package dedupe

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestChangelogCodec(t *testing.T) {
	tests := []struct {
		name    string
		key     []byte
		value   []byte
		want    Mutation
		wantErr string
	}{
		{name: "upsert", key: []byte("o-17"), value: []byte{0, 0, 1, 0x8f, 0xd6, 0x2c, 0x5c, 0x00}, want: Mutation{ID: "o-17", Timestamp: time.UnixMilli(0x18fd62c5c00)}},
		{name: "epoch", key: []byte("k"), value: make([]byte, 8), want: Mutation{ID: "k", Timestamp: time.UnixMilli(0)}},
		{name: "before the epoch", key: []byte("k"), value: bytes.Repeat([]byte{0xff}, 8), want: Mutation{ID: "k", Timestamp: time.UnixMilli(-1)}},
		{name: "tombstone", key: []byte("o-17"), value: nil, want: Mutation{ID: "o-17", Tombstone: true}},
		{name: "empty value is not a tombstone", key: []byte("k"), value: []byte{}, wantErr: "is 0 bytes, want 8"},
		{name: "short value", key: []byte("k"), value: []byte{1, 2, 3}, wantErr: "is 3 bytes, want 8"},
		{name: "long value", key: []byte("k"), value: make([]byte, 9), wantErr: "is 9 bytes, want 8"},
		{name: "null key", key: nil, value: make([]byte, 8), wantErr: "null or empty key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeMutation(tt.key, tt.value)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodeMutation error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tt.want.ID || got.Tombstone != tt.want.Tombstone || !got.Timestamp.Equal(tt.want.Timestamp) {
				t.Fatalf("DecodeMutation = %+v, want %+v", got, tt.want)
			}
			if k, v := got.Key(), got.Value(); !bytes.Equal(k, tt.key) || !bytes.Equal(v, tt.value) || (v == nil) != (tt.value == nil) {
				t.Fatalf("re-encoded as %x=%x, want %x=%x", k, v, tt.key, tt.value)
			}
		})
	}
}

func TestEncodeTimestampTruncatesToMilliseconds(t *testing.T) {
	ts := time.Date(2026, 5, 4, 3, 2, 1, 987654321, time.UTC)
	got, tomb, err := DecodeValue(EncodeTimestamp(ts))
	if err != nil || tomb || !got.Equal(ts.Truncate(time.Millisecond)) {
		t.Fatalf("round trip of %v = %v, %v, %v", ts, got, tomb, err)
	}
}
