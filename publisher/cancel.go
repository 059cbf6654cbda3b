package publisher

// CancelReply is falbridge's JSON answer to a request on the cancel subject
// ("<cancel prefix>.<trigger id>").
type CancelReply struct {
	// ID is the trigger id.
	ID string `json:"id"`
	// Status is one of the Cancel… statuses.
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// Statuses of a [CancelReply].
const (
	// CancelCanceled: canceled at fal or before reaching it; the job ends
	// with error [CodeCanceled].
	CancelCanceled = "canceled"
	// CancelRequested: fal was asked to stop a running job; its outcome
	// follows: canceled if the app stops, else its result (billed).
	CancelRequested = "cancel_requested"
	// CancelAlreadyDone: the job had already ended.
	CancelAlreadyDone = "already_done"
	// CancelAlreadyCompleted: fal finished the job first; the result
	// follows.
	CancelAlreadyCompleted = "already_completed"
	// CancelUnknown: no job with this id.
	CancelUnknown = "unknown"
	// CancelError: the cancel could not be carried out; see Message.
	CancelError = "error"
)

// EventHeader names the header that tells a result from an error on
// subjects that may carry both (a trigger's result_subject): its value is
// "result", "error" or, on status subjects, "status".
const EventHeader = "Falbridge-Event"
