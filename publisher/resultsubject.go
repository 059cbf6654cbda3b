package publisher

import (
	"fmt"
	"strings"

	"github.com/falbridge/falbridge/internal/subject"
)

// ResultSubjectAllowDefault is the allow list falbridge uses when none is
// configured (config key subjects.result_subject_allow): any subject under
// "app.", the prefix documented for users' own subjects.
const ResultSubjectAllowDefault = "app.>"

// ResultSubjectAllowed decides whether a trigger may ask for a copy of its
// terminal event on subject s (its result_subject). falbridge publishes that
// copy with its own NATS identity, so the trigger's author, who may only
// have the right to publish triggers, must not choose a subject falbridge
// itself relies on. The rules, in order:
//
//   - "" (no result_subject) is allowed;
//   - s must be a subject without wildcards;
//   - s must not belong to the server ("$…": $KV, $JS, $SYS, $O …; "_INBOX"),
//     see subject.ServerOwned;
//   - s must not lie at or under any entry of reserved (falbridge's own
//     subjects and prefixes: config's Config.ReservedSubjects), even when an
//     allow pattern such as ">" would cover it;
//   - s must match one of the allow patterns (NATS wildcard semantics); an
//     empty allow list allows nothing.
//
// A refusal is a [*TriggerError] with Field "result_subject" (wrapping
// [ErrInvalidTrigger]) whose reason says which patterns are allowed. It is
// pure and safe for concurrent use.
func ResultSubjectAllowed(s string, allow, reserved []string) error {
	if s == "" {
		return nil
	}
	refuse := func(why string) error {
		return triggerErr("result_subject", fmt.Sprintf("%q refused: %s; %s", s, why, allowedText(allow)))
	}
	if !subject.Valid(s, false) {
		return refuse("not a NATS subject without wildcards")
	}
	if subject.ServerOwned(s) {
		return refuse("server subjects ($…, _INBOX) are never allowed")
	}
	for _, r := range reserved {
		if r != "" && subject.Within(r, s) {
			return refuse(fmt.Sprintf("it lies within falbridge's own subjects (%s)", r))
		}
	}
	for _, a := range allow {
		if subject.Valid(a, true) && subject.Overlap(a, s) {
			return nil
		}
	}
	return refuse("it matches no allowed pattern")
}

func allowedText(allow []string) string {
	if len(allow) == 0 {
		return "no result_subject is allowed (subjects.result_subject_allow is empty)"
	}
	return "allowed: " + strings.Join(allow, ", ") + " (subjects.result_subject_allow)"
}
