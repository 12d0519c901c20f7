//! Traces to an OpenTelemetry collector (the `otel` cargo feature, on by default): when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, opsrun's
//! spans are exported over OTLP/HTTP (JSON) in batches: a span per HTTP request, per job
//! attempt (`opsrun.run`, `opsrun.item`) with the run's id, family, tenant and outcome. Without
//! the variable nothing is exported and nothing is sent.

/// What must be flushed when the process ends.
#[derive(Debug)]
pub struct Exporter {
    #[cfg(feature = "otel")]
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Exporter {
    /// Flushes the spans not yet exported (bounded by the exporter's timeout).
    pub async fn shutdown(self) {
        #[cfg(feature = "otel")]
        {
            let provider = self.provider;
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// Whether an OTLP endpoint is configured.
#[must_use]
pub fn configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// The layer that exports opsrun's spans, and what to flush at the end; `None` when no
/// endpoint is configured (or the feature is off, or the exporter cannot be built: said on
/// stderr once logging is up).
#[cfg(feature = "otel")]
pub fn layer<S>() -> Option<(
    Box<dyn tracing_subscriber::Layer<S> + Send + Sync + 'static>,
    Exporter,
)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig as _};
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use tracing_subscriber::Layer as _;

    if !configured() {
        return None;
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .build()
        .ok()?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("opsrun")
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let tracer = provider.tracer("opsrun");
    // Only opsrun's own spans: the log filter (`OPSRUN_LOG`) does not decide what is traced.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with("opsrun")
        }));
    Some((Box::new(layer), Exporter { provider }))
}

/// Without the `otel` feature nothing is exported.
#[cfg(not(feature = "otel"))]
pub fn layer<S>() -> Option<(
    Box<dyn tracing_subscriber::Layer<S> + Send + Sync + 'static>,
    Exporter,
)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    None
}
