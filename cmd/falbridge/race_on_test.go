//go:build race

package main

// raceEnabled: this test binary runs under the race detector, so the
// falbridge binary its subprocess tests start is built with it too.
const raceEnabled = true
