package dedupe

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Mutation is one change to a Store, to be written to its changelog topic in the batch's transaction: an upsert
// (the identity was inserted, Timestamp is its event time) or a tombstone (the identity was evicted).
type Mutation struct {
	ID        string
	Timestamp time.Time // zero for a tombstone
	Tombstone bool
}

// Key returns the changelog record key: the identity's bytes, so that compaction keeps the last change of each
// identity.
func (m Mutation) Key() []byte { return []byte(m.ID) }

// Value returns the changelog record value: nil for a tombstone (a Kafka null value, which compaction deletes),
// otherwise EncodeTimestamp(m.Timestamp).
func (m Mutation) Value() []byte {
	if m.Tombstone {
		return nil
	}
	return EncodeTimestamp(m.Timestamp)
}

// timestampLen is the size of an upsert's value. Values of any other length are rejected, which leaves room for
// a future format told apart by its length (an older version then fails loudly instead of misreading it).
const timestampLen = 8

// EncodeTimestamp returns the changelog value of an upsert: the event time as 8 bytes of big-endian Unix
// milliseconds, Kafka's own timestamp resolution.
func EncodeTimestamp(ts time.Time) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, timestampLen), uint64(ts.UnixMilli()))
}

// DecodeValue reads a changelog value: nil is a tombstone; otherwise it must be the 8 bytes EncodeTimestamp
// writes. An empty but non-nil value is not a tombstone (Kafka keeps it through compaction) and is an error.
func DecodeValue(value []byte) (ts time.Time, tombstone bool, err error) {
	if value == nil {
		return time.Time{}, true, nil
	}
	if len(value) != timestampLen {
		return time.Time{}, false, fmt.Errorf("dedupe changelog value is %d bytes, want %d (big-endian Unix milliseconds) or null", len(value), timestampLen)
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(value))), false, nil
}

// DecodeMutation reads a changelog record back into the Mutation that wrote it.
func DecodeMutation(key, value []byte) (Mutation, error) {
	if len(key) == 0 {
		return Mutation{}, fmt.Errorf("dedupe changelog record has a null or empty key, want the identity")
	}
	ts, tomb, err := DecodeValue(value)
	if err != nil {
		return Mutation{}, fmt.Errorf("%w (identity %q)", err, key)
	}
	return Mutation{ID: string(key), Timestamp: ts, Tombstone: tomb}, nil
}
