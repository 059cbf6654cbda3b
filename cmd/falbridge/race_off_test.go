//go:build !race

package main

// raceEnabled: see race_on_test.go. Without -race the subprocess binary is
// a plain build, which the build cache keeps (a -race build of the whole
// binary costs about two minutes cold).
const raceEnabled = false
