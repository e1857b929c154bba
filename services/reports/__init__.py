"""Monthly chargeback reports (issue 19): services.reports.chargeback builds, .source reads, .outputs renders."""
