// Package txn is the consume-transform-produce loop: one micro-batch is one Kafka transaction, and this package
// decides what to do when a step fails. It talks to the consumer, the producer and the rate controller only
// through the interfaces below, so the whole policy is testable without a broker.
//
// # What goes wrong, and what the loop does about it
//
// A transaction makes the batch's outputs and its input offsets visible together or not at all. Three things
// break that if the loop is careless:
//
// Zombies. A processor that stalls (GC pause, network partition) can lose its partitions to another instance and
// then wake up and try to commit. Two defences stop it. The transactional.id is stable per instance, so the
// instance's replacement calls InitTransactions with the same id, which bumps the producer epoch: the zombie's
// next produce or commit fails as fenced, a fatal error, and it exits. And the offsets carry the consumer's group
// generation (KIP-447): the group coordinator refuses offsets from a member whose generation is stale, so a
// zombie that lost its partitions in a rebalance cannot commit their offsets even under a different
// transactional.id. This is why the group metadata is taken after the batch is polled, and why fenced is fatal
// rather than retried: retrying means fighting the instance that legitimately owns the work.
//
// Rebalances in the middle of a transaction. If the consumer were polled between Begin and Commit, a rebalance
// callback could revoke a partition whose records are already produced in the open transaction; its new owner
// would read them again from the committed offset, and both would commit them. So the loop polls only while
// assembling, before Begin. A revocation then drops the revoked partitions' unproduced records, and nothing of
// theirs is in a transaction yet. The price is that a rebalance waits for the batch in flight to commit, which is
// why the batch interval is short and max.poll.interval.ms is long.
//
// Half-failed transactions. After an abortable error (a failed delivery, the broker aborting the transaction)
// the outputs are discarded by the abort markers, but the consumer has already moved past the batch. The loop
// aborts, rewinds every partition to its committed offset, backs off, and redoes the batch in a new transaction.
// Skipping the rewind would lose the batch; skipping the abort would leave the outputs of a transaction that is
// then committed with the next batch's offsets.
//
// State that outlives a batch. De-duplication remembers the identities it let through; if that memory were
// updated outside the transaction, an aborted batch would leave its records marked as seen and the redo would
// drop them as duplicates: lost. So the store's changes travel as changelog records in the batch's own
// transaction, the store rolls back when the transaction aborts, and a partition's new owner rebuilds the store
// from the changelog with read_committed, which shows exactly the state that goes with the committed offsets.
//
// Errors nobody classified are fatal: an unknown state is not one to retry into. The process exits non-zero and
// its supervisor restarts it, and InitTransactions on restart cleans up whatever the dead incarnation left open.
package txn
