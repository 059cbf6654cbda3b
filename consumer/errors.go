package consumer

import "errors"

var (
	// ErrStopping is the cancellation cause given to in-flight work when the
	// pool stops.
	ErrStopping = errors.New("consumer: stopping")

	// ErrAlreadyStarted is returned by Start on a pool that is running.
	ErrAlreadyStarted = errors.New("consumer: already started")

	// errJobExists means the trigger id is already claimed.
	errJobExists = errors.New("job exists")
	// errRevisionMismatch means another writer changed the job record first.
	errRevisionMismatch = errors.New("job revision mismatch")
)
