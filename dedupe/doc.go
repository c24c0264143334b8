// Package dedupe owns exactly-once de-duplication by identity: reading a record's identity (IdentitySpec: the
// Kafka key, a header or a JSON field), the per-partition store of identities seen within a time window
// (Store), and the codec of the store's compacted changelog topic (Mutation, DecodeValue). It is pure: no Kafka
// I/O, no goroutines, no clock; the loop (txn) feeds it records and writes the changes it reports.
//
// # Why a duplicate can be caught at all
//
// Input may hold duplicates because an upstream producer without idempotence retried a send. The store sees
// only its own input partition, so the precondition is that records with the same identity land in the same
// input partition: the topic is keyed by that identity upstream (for the Kafka key this is what the default
// partitioner does; for a header or JSON identity, the producer must key by the same value). Otherwise two
// copies on two partitions are both kept, and nothing here can tell.
//
// # Window
//
// Time is event time (the record timestamp, in milliseconds) and stream time is the largest event time the
// partition has seen, as in Kafka Streams. A record is a duplicate when its identity was inserted at an event
// time last with ts - last <= Window (the boundary is a duplicate, as is any record older than the first) and
// has not been evicted since. A duplicate does not refresh the entry: the window runs from the first
// occurrence (see Store.Seen for why). Identities inserted before stream time minus the window are evicted, so
// are the oldest inserted beyond MaxEntries, and a record older than stream time minus the window whose
// identity is not held is let through unstored: beyond the window nothing is promised, and the store prefers a
// rare late duplicate to dropping a unique record. A timestamp far in the future advances stream time and
// evicts everything before it, as it would close Kafka Streams' windows.
//
// # Batch protocol
//
// The store's state must be exactly what the changelog holds for the committed input offsets, so every change
// is staged until the transaction that carries it commits:
//
//  1. On assignment, NewStore, then Restore/RestoreTombstone (or RestoreRecord) every record of the changelog
//     partition, read with read_committed from the beginning to its end. This state is committed. Stage does
//     this in the background (Stage.Ready) while the loop holds the partition's records back.
//  2. For each input record of a batch, Seen(identity, timestamp); drop the record when it returns true.
//  3. In the batch's transaction, write Changes() to the changelog partition co-partitioned with the input
//     partition (Mutation.Key, Mutation.Value; nil is a tombstone), next to the outputs and the offsets.
//  4. If the transaction commits, Commit(). If it aborts, Rollback(): the store returns exactly to its state at
//     the last Commit, as the loop rewinds the partition to its committed offset and reads the records again.
//
// On revocation, drop the store: the next owner restores it from the changelog. Inserts and evictions are the
// only changes (a duplicate changes nothing), and each writes one changelog record, so a batch of n records
// writes at most about 2n.
package dedupe
