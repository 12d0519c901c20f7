//! Trace context across the queue: a job carries the W3C `traceparent` of the span that
//! enqueued it, so the HTTP request that started a run is the parent of its run job's span,
//! and a fan-out's child jobs link to the run that fanned them out (the OpenTelemetry
//! messaging conventions' fan-out shape: links, not one giant trace). Without the `otel`
//! feature, or with no exporter configured, nothing is carried.

/// The `traceparent` of the current span, when one is being exported.
#[must_use]
pub fn current() -> Option<String> {
    imp::current()
}

/// Makes `traceparent`'s span the parent of `span` (call before `span` is entered).
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        imp::continue_from(span, traceparent);
    }
}

/// Links `span` to `traceparent`'s span.
pub fn link_to(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        imp::link_to(span, traceparent);
    }
}

#[cfg(feature = "otel")]
mod imp {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    pub(super) fn current() -> Option<String> {
        let span = tracing::Span::current();
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove("traceparent")
    }

    fn context(traceparent: &str) -> opentelemetry::Context {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        TraceContextPropagator::new().extract(&carrier)
    }

    pub(super) fn continue_from(span: &tracing::Span, traceparent: &str) {
        // A span without an exporting layer, or already started, keeps its own parent.
        let _ = span.set_parent(context(traceparent));
    }

    pub(super) fn link_to(span: &tracing::Span, traceparent: &str) {
        let linked = context(traceparent).span().span_context().clone();
        if linked.is_valid() {
            span.add_link(linked);
        }
    }
}

#[cfg(not(feature = "otel"))]
mod imp {
    pub(super) fn current() -> Option<String> {
        None
    }

    pub(super) fn continue_from(_: &tracing::Span, _: &str) {}

    pub(super) fn link_to(_: &tracing::Span, _: &str) {}
}
