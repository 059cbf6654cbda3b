package console

import "errors"

// ErrInvalidConfig is wrapped by [New] when its Config cannot work.
var ErrInvalidConfig = errors.New("console: invalid config")

// errNotFound: the console knows nothing of a job id.
var errNotFound = errors.New("no such job")
