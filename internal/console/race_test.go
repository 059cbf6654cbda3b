//go:build race

package console

// raceSlowdown scales time budgets under the race detector, which makes
// code 2 to 20 times slower (Go's documentation); the budget of record is
// the one without it.
const raceSlowdown = 10
