package exchange

import "errors"

// Sentinel errors. Errors returned by this package wrap them; test with errors.Is.
var (
	// ErrPartitionNotFound: a consumer waited RegisterTimeout for a producer
	// partition that was never registered (or whose TaskManager was unreachable).
	ErrPartitionNotFound = errors.New("exchange: producer partition not registered")
	// ErrPartitionExists: CreatePartition was called twice with the same id.
	ErrPartitionExists = errors.New("exchange: partition already registered")
	// ErrPartitionReleased: the producer partition was released before the
	// consumer received its end; its queued frames were dropped.
	ErrPartitionReleased = errors.New("exchange: producer partition released")
	// ErrPartitionFinished: Emit after Finish.
	ErrPartitionFinished = errors.New("exchange: partition already finished")
	// ErrAlreadyConsumed: a second consumer tried to read a subpartition.
	ErrAlreadyConsumed = errors.New("exchange: subpartition already has a consumer")
	// ErrProducerLost: the stream to a remote producer broke or went silent.
	ErrProducerLost = errors.New("exchange: producer lost")
	// ErrProtocol: a peer violated the exchange protocol (e.g. sent beyond credit).
	ErrProtocol = errors.New("exchange: protocol violation")
	// ErrClosed: the Manager or the InputGate was closed.
	ErrClosed = errors.New("exchange: closed")
)
