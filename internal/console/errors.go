package console

import "errors"

// ErrInvalidConfig is wrapped by [New] when its Config cannot work.
var ErrInvalidConfig = errors.New("console: invalid config")
