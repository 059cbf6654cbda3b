package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/publisher"
)

// RetryOfKey is the metadata key a console retry records the old job id
// under, in the republished trigger (and so in its result or error event).
const RetryOfKey = "falbridge_retry_of"

// cancelWait bounds a cancel request: falbridge may wait on fal.
const cancelWait = 20 * time.Second

var (
	errNotRetryable = errors.New("the original trigger is not stored whole")
	errNotObject    = errors.New("the original trigger is not a JSON object")
)

// retryBody returns the trigger body to republish for old under newID:
// the original body, every field kept, with id set to newID and
// metadata.falbridge_retry_of to old. Metadata that is not an object (or
// absent) becomes {"falbridge_retry_of": old, "metadata": <the original>}
// (absent: no "metadata").
func retryBody(trigger json.RawMessage, truncated bool, newID, old string) ([]byte, error) {
	if truncated || len(trigger) == 0 {
		return nil, errNotRetryable
	}
	var body map[string]json.RawMessage
	if trigger[0] != '{' || json.Unmarshal(trigger, &body) != nil {
		return nil, errNotObject
	}
	idJSON, _ := json.Marshal(newID)
	body["id"] = idJSON
	oldJSON, _ := json.Marshal(old)
	md := map[string]json.RawMessage{}
	if orig, ok := body["metadata"]; ok && len(orig) > 0 && string(orig) != "null" {
		if orig[0] != '{' || json.Unmarshal(orig, &md) != nil {
			md = map[string]json.RawMessage{"metadata": orig}
		}
	}
	md[RetryOfKey] = oldJSON
	mdJSON, err := marshalRaw(md)
	if err != nil {
		return nil, err
	}
	body["metadata"] = mdJSON
	return marshalRaw(body)
}

// marshalRaw encodes m without HTML escaping: the user's strings go back
// to fal as they came (json.Marshal would turn "<" into "\u003c", also
// inside RawMessage values).
func marshalRaw(m map[string]json.RawMessage) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(b.Bytes()), nil
}

// retry republishes the trigger of a job under a new id linked to the old
// one (metadata.falbridge_retry_of) and redirects to the new job's page.
func (c *Console) retry(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	old := r.PathValue("id")
	if !publisher.ValidID(old) {
		http.Error(w, "not a trigger id", http.StatusBadRequest)
		return
	}
	rec, err := publisher.LookupJob(ctx, c.js, c.streams.JobsBucket, old)
	if err != nil && !errors.Is(err, publisher.ErrJobNotFound) {
		c.fail(w, r, err)
		return
	}
	var trig json.RawMessage
	truncated := false
	if rec != nil {
		trig, truncated = rec.Trigger, rec.Truncated
	}
	if len(trig) == 0 {
		if t, ok, err := c.terminalOf(ctx, old); err != nil {
			c.fail(w, r, err)
			return
		} else if ok && t.Error != nil {
			trig, truncated = t.Error.Trigger, t.Error.Truncated
		}
	}
	newID := publisher.NewID()
	body, err := retryBody(trig, truncated, newID, old)
	if err != nil {
		http.Error(w, "cannot retry "+old+": "+err.Error(), http.StatusConflict)
		return
	}
	if _, err := c.js.Publish(ctx, c.subjects.RequestSubject(newID), body, jetstream.WithMsgID(newID)); err != nil {
		c.fail(w, r, fmt.Errorf("publish retry of %s: %w", old, err))
		return
	}
	c.log.Info("console retry", "trigger_id", newID, "retry_of", old)
	http.Redirect(w, r, Prefix+"jobs/"+newID+"?notice="+url.QueryEscape("retry of "+old+" published as "+newID), http.StatusSeeOther)
}

// cancel asks falbridge (any replica) to cancel the job on the cancel
// subject and shows the answer.
func (c *Console) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !publisher.ValidID(id) {
		http.Error(w, "not a trigger id", http.StatusBadRequest)
		return
	}
	ctx, done := context.WithTimeout(r.Context(), cancelWait)
	defer done()
	msg, err := c.nc.RequestWithContext(ctx, c.subjects.Cancel(id), nil)
	notice := ""
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		notice = "cancel: no falbridge replica is listening on " + c.subjects.Cancel(id)
	case err != nil:
		notice = "cancel: " + err.Error()
	default:
		var rep publisher.CancelReply
		if json.Unmarshal(msg.Data, &rep) != nil {
			notice = "cancel: unreadable reply"
		} else {
			notice = "cancel: " + rep.Status
			if rep.Message != "" {
				notice += " (" + rep.Message + ")"
			}
		}
	}
	c.log.Info("console cancel", "trigger_id", id, "notice", notice)
	http.Redirect(w, r, Prefix+"jobs/"+id+"?notice="+url.QueryEscape(notice), http.StatusSeeOther)
}
