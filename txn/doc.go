// Package txn is the consume-transform-produce loop: one micro-batch is one Kafka transaction, and this package
// decides what to do when a step fails. It talks to the consumer, the producer and the rate controller only
// through the small interfaces in interfaces.go, so the whole policy is testable without a broker.
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
// transactional.id. This is why the group metadata is taken after the batch is polled (just before its offsets
// are sent), and why fenced is fatal rather than retried: retrying means fighting the instance that legitimately
// owns the work.
//
// Rebalances in the middle of a transaction. Batches are pipelined: while batch N's transaction writes what is left
// of it, sends its offsets and commits, batch N+1 is assembled on the loop's goroutine, so the consumer is polled,
// and rebalance callbacks run, while a transaction is open. And once N has committed (or, with an Alternate
// producer, once N's records are all delivered: N+1's transaction then runs on the other producer while N commits),
// N+1 begins its own transaction and writes its records as they arrive, before its assembly ends, so a transaction
// is open during most of every assembly. A revocation or loss is therefore made to wait, inside the callback, until
// the transaction in flight has committed or aborted: only then are the partitions given up, so their next owner
// reads committed offsets that include batch N (or, if it aborted, do not), never offsets that batch N then moves.
// If batch N+1's own transaction has written records of a partition going, it is aborted in the callback too, and
// the loop rewinds: committed without that partition's offsets, those records would be written again by its next
// owner. The revoked partitions' records that no transaction holds yet are dropped; their next owner reads them
// from the committed offsets. The group metadata is taken just before the offsets are sent, so it carries the
// newest generation, one in which the partitions are still ours since their revocation is waiting. The price is
// that a rebalance waits for the transaction in flight, which is why the batch interval is short and
// max.poll.interval.ms is long, and that a revocation costs the batch being assembled a redo.
//
// Half-failed transactions. After an abortable error (a failed delivery, the broker aborting the transaction) the
// outputs are discarded by the abort markers, but the consumer has already moved past the batch, and past the next
// one assembled beside it. The loop aborts, drops the next batch (aborting its transaction too if it began on the
// Alternate), rewinds every partition to its committed offset, backs off, and reads both again. Skipping the rewind
// would lose both batches; skipping the abort would leave the outputs of a transaction that is then committed with
// the next batch's offsets.
//
// State that outlives a batch. De-duplication remembers the identities it let through; if that memory were
// updated outside the transaction, an aborted batch would leave its records marked as seen and the redo would
// drop them as duplicates: lost. So the store's changes travel as changelog records in the batch's own
// transaction, the store rolls back when the transaction aborts, and a partition's new owner rebuilds the store
// from the changelog with read_committed, which shows exactly the state that goes with the committed offsets.
// A batch's records are filtered only once the previous transaction has settled (as they are written, during
// the assembly or after it), so the store never holds two batches' pending changes.
//
// Two producers in turn. With an Alternate, batch N+1 writes on the producer batch N does not use, but only once
// every record of N is acknowledged, so each partition holds N's records before N+1's as one producer would
// write them; and it sends its offsets only once N has committed, so its offset commit is appended after N's
// and the group coordinator keeps it, whichever transaction's markers land first.
//
// Errors nobody classified are fatal: an unknown state is not one to retry into. The process exits non-zero and
// its supervisor restarts it, and InitTransactions on restart cleans up whatever the dead incarnation left open.
package txn
