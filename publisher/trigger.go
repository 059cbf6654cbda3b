package publisher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/falbridge/falbridge/internal/subject"
)

// reservedKeys are the top-level trigger keys that are not model input in
// the flat workflow form.
var reservedKeys = map[string]bool{
	"id": true, "model_id": true, "model": true, "input": true, "mode": true,
	"result_subject": true, "metadata": true, "priority": true, "timeout": true,
	"progress": true, "tenant": true, "input_params": true, "image_input": true, "use_streaming": true,
	"start_timeout": true, "media_expires_in": true,
}

// DecodeTrigger decodes and validates a trigger body and returns its
// canonical form. It accepts three shapes:
//
//   - canonical: {"model_id", "input": {...}, "id", "mode", "priority",
//     "timeout", "result_subject", "metadata", "progress", "tenant"}; input must be a
//     JSON object.
//   - flat (workflow form A): no "input" and no "input_params": every
//     top-level key that is not reserved (prompt, image_size, num_images,
//     seed, ...) becomes a key of the input object, its JSON value kept byte
//     for byte (big integers such as seeds survive exactly).
//   - tool (workflow form B): "model" instead of "model_id", "input_params"
//     (an object, optional) as the input, "image_input" (a URL string →
//     input.image_url; an array of URL strings → input.image_urls) and
//     "use_streaming" (true → mode "stream").
//
// "model" and "model_id" are interchangeable, "image_input" and
// "use_streaming" are accepted in every shape. The reserved keys are id,
// model_id, model, input, mode, result_subject, metadata, priority, timeout,
// progress, tenant, input_params, image_input and use_streaming. A JSON null for an optional
// key means the key is absent. When "input" or "input_params" is given, any
// other top-level key is an error, so that no input is silently dropped.
//
// Rules, each violation a [*TriggerError] naming the key (it wraps
// [ErrInvalidTrigger]): the body is a UTF-8 JSON object; model_id (or model)
// is a non-empty string (its syntax is checked later, by the consumer); id,
// when present, satisfies [ValidID]; mode is queue, sync or stream; priority
// is high, normal or low; timeout is a duration ≥ 0 (see [Duration]); progress
// is a boolean; tenant satisfies [ValidID] and has at most [MaxTenantLen]
// characters;
// result_subject is a NATS subject without wildcards; metadata is any JSON;
// "input" and "input_params" are not both given; use_streaming agrees with
// mode when both are given; image_input does not collide with a key
// already in the input.
//
// Input and Metadata of the result are compacted (insignificant whitespace
// removed); flat-form input keys are sorted.
func DecodeTrigger(body []byte) (*Trigger, error) {
	if !utf8.Valid(body) {
		return nil, triggerErr("", "not valid UTF-8")
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, triggerErr("", "not a JSON object")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return nil, triggerErr("", "not a JSON object: "+jsonErrText(err))
	}
	// A JSON null for an optional key is the same as leaving it out.
	for k, v := range raw {
		if string(v) == "null" && k != "input" {
			delete(raw, k)
		}
	}

	t := &Trigger{}
	var err error

	// model_id / model
	modelRaw, hasModelID := raw["model_id"]
	modelField := "model_id"
	if m, ok := raw["model"]; ok {
		if hasModelID {
			return nil, triggerErr("model", "cannot be used together with model_id")
		}
		modelRaw, modelField = m, "model"
	}
	if modelRaw == nil {
		return nil, triggerErr("model_id", "required")
	}
	if t.ModelID, err = stringField(modelField, modelRaw); err != nil {
		return nil, err
	}
	if strings.TrimSpace(t.ModelID) == "" {
		return nil, triggerErr(modelField, "required")
	}

	// id
	if v, ok := raw["id"]; ok {
		if t.ID, err = stringField("id", v); err != nil {
			return nil, err
		}
		if !ValidID(t.ID) {
			return nil, triggerErr("id", fmt.Sprintf("must be 1 to %d characters, each a letter, digit, '-' or '_' (got %q)", MaxIDLen, t.ID))
		}
	}

	// mode / use_streaming
	if v, ok := raw["mode"]; ok {
		s, err := stringField("mode", v)
		if err != nil {
			return nil, err
		}
		switch Mode(s) {
		case "", ModeQueue, ModeSync, ModeStream:
			t.Mode = Mode(s)
		default:
			return nil, triggerErr("mode", fmt.Sprintf("must be queue, sync or stream (got %q)", s))
		}
	}
	if v, ok := raw["use_streaming"]; ok {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return nil, triggerErr("use_streaming", "must be a boolean")
		}
		switch {
		case b && (t.Mode == "" || t.Mode == ModeStream):
			t.Mode = ModeStream
		case b:
			return nil, triggerErr("use_streaming", fmt.Sprintf("true conflicts with mode %q", t.Mode))
		case t.Mode == ModeStream:
			return nil, triggerErr("use_streaming", `false conflicts with mode "stream"`)
		}
	}

	// priority
	if v, ok := raw["priority"]; ok {
		if t.Priority, err = stringField("priority", v); err != nil {
			return nil, err
		}
		switch t.Priority {
		case "", PriorityHigh, PriorityNormal, PriorityLow:
		default:
			return nil, triggerErr("priority", fmt.Sprintf("must be high, normal or low (got %q)", t.Priority))
		}
	}

	// timeout
	if v, ok := raw["timeout"]; ok {
		if err := t.Timeout.UnmarshalJSON(v); err != nil {
			return nil, triggerErr("timeout", err.Error())
		}
	}

	// progress
	if v, ok := raw["progress"]; ok {
		if err := json.Unmarshal(v, &t.Progress); err != nil {
			return nil, triggerErr("progress", "must be a boolean")
		}
	}

	// tenant
	if v, ok := raw["tenant"]; ok {
		if t.Tenant, err = stringField("tenant", v); err != nil {
			return nil, err
		}
		if t.Tenant != "" && (!ValidID(t.Tenant) || len(t.Tenant) > MaxTenantLen) {
			return nil, triggerErr("tenant", fmt.Sprintf("must be 1 to %d characters, each a letter, digit, '-' or '_' (got %q)", MaxTenantLen, t.Tenant))
		}
	}

	// start_timeout, media_expires_in: fal's request options
	if v, ok := raw["start_timeout"]; ok {
		if err := t.StartTimeout.UnmarshalJSON(v); err != nil {
			return nil, triggerErr("start_timeout", err.Error())
		}
		if t.StartTimeout != 0 && time.Duration(t.StartTimeout) <= MinStartTimeout {
			return nil, triggerErr("start_timeout", fmt.Sprintf("must be more than %s, fal's minimum (got %s)", MinStartTimeout, time.Duration(t.StartTimeout)))
		}
	}
	if v, ok := raw["media_expires_in"]; ok {
		if err := t.MediaExpiresIn.UnmarshalJSON(v); err != nil {
			return nil, triggerErr("media_expires_in", err.Error())
		}
		if d := time.Duration(t.MediaExpiresIn); d != 0 && (d < time.Second || d%time.Second != 0) {
			return nil, triggerErr("media_expires_in", fmt.Sprintf("must be whole seconds, at least 1s (got %s)", d))
		}
	}

	// result_subject
	if v, ok := raw["result_subject"]; ok {
		if t.ResultSubject, err = stringField("result_subject", v); err != nil {
			return nil, err
		}
		if t.ResultSubject != "" && !subject.Valid(t.ResultSubject, false) {
			return nil, triggerErr("result_subject", fmt.Sprintf("must be a NATS subject without wildcards (got %q)", t.ResultSubject))
		}
	}

	// metadata
	if v, ok := raw["metadata"]; ok {
		t.Metadata = compact(v)
	}

	// input
	input, err := decodeInput(raw)
	if err != nil {
		return nil, err
	}
	if v, ok := raw["image_input"]; ok {
		if input, err = addImageInput(input, v); err != nil {
			return nil, err
		}
	}
	if t.Input, err = encodeObject(input); err != nil {
		return nil, triggerErr("input", err.Error())
	}
	return t, nil
}

// decodeInput returns the input object as a map of raw values, from
// "input", "input_params" or the flat keys.
func decodeInput(raw map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	in, hasInput := raw["input"]
	params, hasParams := raw["input_params"]
	if hasInput && hasParams {
		return nil, triggerErr("input_params", "cannot be used together with input")
	}
	field := "input"
	if hasParams {
		in, field = params, "input_params"
	}
	if !hasInput && !hasParams {
		// Flat form: every non-reserved key is input.
		m := make(map[string]json.RawMessage)
		for k, v := range raw {
			if !reservedKeys[k] {
				m[k] = v
			}
		}
		return m, nil
	}
	for _, k := range sortedKeys(raw) {
		if !reservedKeys[k] {
			return nil, triggerErr(k, fmt.Sprintf("unknown field (model inputs go inside %s)", field))
		}
	}
	if len(in) == 0 || in[0] != '{' {
		return nil, triggerErr(field, "must be a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(in, &m); err != nil {
		return nil, triggerErr(field, "must be a JSON object: "+jsonErrText(err))
	}
	return m, nil
}

// addImageInput maps image_input into the input: a string becomes
// image_url, an array of strings image_urls.
func addImageInput(input map[string]json.RawMessage, v json.RawMessage) (map[string]json.RawMessage, error) {
	var key string
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil || s == "" {
			return nil, triggerErr("image_input", "must be a non-empty URL string or an array of them")
		}
		key = "image_url"
	case '[':
		var ss []string
		if err := json.Unmarshal(v, &ss); err != nil || len(ss) == 0 || slices.Contains(ss, "") {
			return nil, triggerErr("image_input", "must be a non-empty URL string or an array of them")
		}
		key = "image_urls"
	default:
		return nil, triggerErr("image_input", "must be a non-empty URL string or an array of them")
	}
	if _, ok := input[key]; ok {
		return nil, triggerErr("image_input", "conflicts with "+key+" already in the input")
	}
	input[key] = v
	return input, nil
}

// encodeObject writes m as a compact JSON object with sorted keys, values
// kept as they are (apart from whitespace).
func encodeObject(m map[string]json.RawMessage) (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		if err := json.Compact(&b, m[k]); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// compact returns v without insignificant whitespace. v must be valid JSON.
func compact(v json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return v
	}
	return b.Bytes()
}

func stringField(field string, v json.RawMessage) (string, error) {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", triggerErr(field, "must be a string")
	}
	return s, nil
}

// jsonErrText shortens encoding/json error texts for trigger errors.
func jsonErrText(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

// ResolveID returns the id of a trigger delivered from a stream:
//
//  1. the trigger's own id (t.ID), when set;
//  2. else natsMsgID, the message's Nats-Msg-Id header, when it is [ValidID];
//  3. else "seq-<streamSeq>", from the message's stream sequence.
//
// Each of these is the same on every redelivery of the message, so the id
// is stable. t may be nil (a body that did not decode). A derived "seq-" id
// is only unique within one stream's lifetime; publishers that want ids
// that survive stream re-creation set one (as [Publisher.Publish] does).
func ResolveID(t *Trigger, natsMsgID string, streamSeq uint64) string {
	if t != nil && t.ID != "" {
		return t.ID
	}
	if ValidID(natsMsgID) {
		return natsMsgID
	}
	return "seq-" + strconv.FormatUint(streamSeq, 10)
}
