package hubqueue

import (
	"errors"
	"fmt"
	"strings"
)

// ErrTopic is returned for a topic that has no faithful routing key.
var ErrTopic = errors.New("hubqueue: topic not routable")

// RabbitMQ's MQTT plugin publishes an MQTT message to its topic exchange
// (amq.topic) with the topic as routing key, MQTT's level separator "/"
// becoming AMQP's "." and the one-level wildcard "+" becoming "*" ("#" is
// the same in both). A "." inside an MQTT topic is left as it is, and so
// splits a level on the AMQP side: such topics cannot be told apart from
// others and are refused here (device ids must not contain ".").

// TopicToKey is the routing key of an MQTT topic name (no wildcards).
func TopicToKey(topic string) (string, error) {
	if topic == "" || strings.ContainsAny(topic, ".+#*") {
		return "", fmt.Errorf("%w: %q", ErrTopic, topic)
	}
	for l := range strings.SplitSeq(topic, "/") {
		if l == "" {
			return "", fmt.Errorf("%w: empty level in %q", ErrTopic, topic)
		}
	}
	return strings.ReplaceAll(topic, "/", "."), nil
}

// FilterToKey is the binding key of an MQTT topic filter ("+" → "*").
func FilterToKey(filter string) (string, error) {
	if filter == "" || strings.ContainsAny(filter, ".*") {
		return "", fmt.Errorf("%w: %q", ErrTopic, filter)
	}
	return strings.ReplaceAll(strings.ReplaceAll(filter, "/", "."), "+", "*"), nil
}

// KeyToTopic is the MQTT topic of a routing key, as the MQTT plugin
// would deliver it to a subscriber.
func KeyToTopic(key string) string {
	return strings.ReplaceAll(strings.ReplaceAll(key, "*", "+"), ".", "/")
}

// split parses <prefix>/<device>/<sub> where sub is one of subs; ok is
// false for anything else.
func split(topic, prefix string, subs []string) (device, sub string, ok bool) {
	rest, ok := strings.CutPrefix(topic, prefix+"/")
	if !ok {
		return "", "", false
	}
	device, sub, ok = strings.Cut(rest, "/")
	if !ok || device == "" || strings.ContainsAny(device, "+#*") {
		return "", "", false
	}
	for _, s := range subs {
		if sub == s {
			return device, sub, true
		}
	}
	return "", "", false
}
