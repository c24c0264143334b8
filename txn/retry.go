package txn

import (
	"context"
	"fmt"
	"time"

	"github.com/eosproc/eosproc/produce"
)

// recover takes the loop back to the committed state after an aborted transaction (already aborted by its own
// goroutine) or a batch that failed before its transaction: the de-duplication store rolls back, the input is
// rewound to the committed offsets, and the loop backs off. Its error is fatal.
func (l *Loop) recover(ctx, work context.Context, ab *abortable, aborts int) error {
	l.Metrics.aborted(ab.step)
	if ab.lost {
		l.Logger.Warn("batch aborted: the group session ended before its offsets were sent; rewinding to committed offsets",
			"error", ab.err)
	} else {
		l.Logger.Warn("transaction aborted; rewinding to committed offsets", "step", ab.step, "error", ab.err,
			"consecutive_aborts", aborts+1)
	}
	if l.Dedupe != nil {
		// The batch is read again, so the store goes back to what the committed changelog holds.
		l.Dedupe.Aborted()
	}
	if ctx.Err() != nil {
		// Shutting down: the committed offsets are where the partitions' next owner starts.
		return nil
	}
	// Without the rewind the consumer would go on after the aborted batch (and after the batch assembled beside
	// its transaction), and both would be lost. That holds for a batch dropped because the group session ended
	// too: librdkafka can reset the member id and generation without revoking the partitions (no lost-assignment
	// callback follows), and a partition that is revoked after all is read again from the committed offsets by
	// its next owner either way.
	for attempt := 0; ; attempt++ {
		err := l.Consumer.Rewind(work)
		if err == nil {
			break
		}
		if attempt == 4 {
			return fmt.Errorf("rewind to committed offsets after aborted %s: %w", ab.step, err)
		}
		l.Logger.Warn("rewind failed; retrying", "error", err)
		if !l.sleep(ctx, l.backoff(attempt)) {
			return nil
		}
	}
	l.sleep(ctx, l.backoff(aborts))
	return nil
}

// retry calls op again while it fails with a retriable error, backing off, until ctx ends.
func (l *Loop) retry(ctx context.Context, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil || produce.ClassOf(err) != produce.Retriable {
			return err
		}
		l.Logger.Info("retrying after retriable error", "error", err, "attempt", attempt+1)
		l.beat()
		if !l.sleep(ctx, l.backoff(attempt)) {
			return err
		}
	}
}

func (l *Loop) backoff(attempt int) time.Duration {
	d := l.MinBackoff
	for range min(attempt, 30) {
		d *= 2
		if d >= l.MaxBackoff {
			return l.MaxBackoff
		}
	}
	return d
}

// sleep waits d or until ctx ends, and says whether it waited the whole time.
func (l *Loop) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
