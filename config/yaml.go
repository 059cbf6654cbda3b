package config

import (
	"bytes"
	"reflect"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// YAML renders c as a YAML config file that [Load] reads back: every key, in
// the order of the Config struct, durations as Go strings ("30s"). Secrets are
// always redacted ("****"), so the output is safe to print but does not
// round-trip them.
func (c Config) YAML() ([]byte, error) {
	root := structNode(reflect.ValueOf(c))
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func structNode(v reflect.Value) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		n.Content = append(n.Content, scalar("!!str", f.Tag.Get("koanf")), valueNode(v.Field(i)))
	}
	return n
}

func valueNode(v reflect.Value) *yaml.Node {
	switch v.Type() {
	case durationType:
		return scalar("!!str", formatDuration(time.Duration(v.Int())))
	case secretType:
		return scalar("!!str", Secret(v.String()).String())
	case intMapType:
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle}
		mp := v.Interface().(map[string]int)
		if len(mp) > 0 {
			m.Style = 0
		}
		for _, k := range sortedKeys(mp) {
			m.Content = append(m.Content, scalar("!!str", k), scalar("!!int", strconv.Itoa(mp[k])))
		}
		return m
	case listType:
		l := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for _, e := range v.Interface().([]string) {
			l.Content = append(l.Content, scalar("!!str", e))
		}
		return l
	}
	switch v.Kind() {
	case reflect.Struct:
		return structNode(v)
	case reflect.Bool:
		return scalar("!!bool", strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int64:
		return scalar("!!int", strconv.FormatInt(v.Int(), 10))
	default:
		return scalar("!!str", v.String())
	}
}

func scalar(tag, value string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
	if tag == "!!str" && value == "" {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}
