package produce

import (
	"errors"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Class says what the caller must do after a failed producer operation. The three classes are librdkafka's
// transactional error contract; everything the producer returns is one of them.
type Class int

const (
	// Fatal: the producer can no longer be used (fenced by a newer instance with the same transactional.id, a
	// fatal idempotence error, or an error nobody classified). Close it and exit; a supervisor restarts the process,
	// whose InitTransactions fences whatever is left of this one.
	Fatal Class = iota
	// Retriable: call the same operation again, with the same arguments.
	Retriable
	// Abortable: the transaction cannot commit. Abort it, rewind the input, and redo the batch in a new one.
	Abortable
)

func (c Class) String() string {
	switch c {
	case Retriable:
		return "retriable"
	case Abortable:
		return "abortable"
	default:
		return "fatal"
	}
}

// Error is a failed producer operation: what was being done, how to react, and the client's error.
type Error struct {
	Op    string
	Class Class
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Op, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of an error returned by this package. An error it did not make is Fatal: an error
// nobody expected must stop the process rather than be retried into an unknown state.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return Fatal
}

// classify maps a librdkafka error onto the contract. Fencing is checked before the flags because a fenced
// producer is never worth retrying whatever librdkafka says about the particular call.
func classify(err error) Class {
	var ke clientError
	if !errors.As(err, &ke) {
		return Fatal
	}
	switch {
	case ke.IsFatal():
		return Fatal
	case ke.Code() == kafka.ErrFenced, ke.Code() == kafka.ErrProducerFenced,
		ke.Code() == kafka.ErrInvalidProducerEpoch, ke.Code() == kafka.ErrTransactionalIDAuthorizationFailed:
		return Fatal
	case ke.IsRetriable():
		return Retriable
	case ke.TxnRequiresAbort():
		return Abortable
	default:
		return Fatal
	}
}

// clientError is what librdkafka's errors tell about themselves (confluent-kafka-go's kafka.Error and this
// project's librdkafka.Error alike).
type clientError interface {
	error
	Code() kafka.ErrorCode
	IsFatal() bool
	IsRetriable() bool
	TxnRequiresAbort() bool
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Class: classify(err), Err: err}
}
