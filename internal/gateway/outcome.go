package gateway

// Outcome is how a request ended. The attempt loop and the reply decide it
// once; the admission settles its holds from it and every reply tap learns
// it in End. It is not an HTTP status: Info.Status keeps the status the
// client saw (599 in logs for a stream that broke after its 200).
type Outcome uint8

// The outcomes.
const (
	// OutcomeRefused: the request never reached the attempt loop (bad
	// input, no key, a limit).
	OutcomeRefused Outcome = iota
	// OutcomeCompleted: the whole answer reached the client.
	OutcomeCompleted
	// OutcomeUpstreamError: every attempt failed before a first byte; the
	// client got an error status.
	OutcomeUpstreamError
	// OutcomeTimeout: the deadline, or an upstream timeout, ended the
	// attempts before a first byte.
	OutcomeTimeout
	// OutcomeStreamBroken: the upstream failed after the first byte; the
	// stream ended with an error event.
	OutcomeStreamBroken
	// OutcomeClientGone: the client left before the end.
	OutcomeClientGone
	// OutcomeShutdown: the process is exiting and the drain ended the
	// request before a first byte: it answered 503 gateway_shutting_down.
	// (A stream the drain ends after its first byte is
	// OutcomeStreamBroken: its client got a gateway_shutting_down event.)
	OutcomeShutdown
)

// Answered reports whether an upstream produced (part of) an answer, so
// that tokens were spent: a reservation is then kept unless real usage is
// known, and refunded in full otherwise.
func (o Outcome) Answered() bool {
	switch o {
	case OutcomeCompleted, OutcomeStreamBroken, OutcomeClientGone:
		return true
	}
	return false
}

func (o Outcome) String() string {
	switch o {
	case OutcomeCompleted:
		return "completed"
	case OutcomeUpstreamError:
		return "upstream_error"
	case OutcomeTimeout:
		return "timeout"
	case OutcomeStreamBroken:
		return "stream_broken"
	case OutcomeClientGone:
		return "client_gone"
	case OutcomeShutdown:
		return "shutdown"
	}
	return "refused"
}
