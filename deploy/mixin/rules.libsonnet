// Recording rules, named level:metric:operations. The alerts (alerts.libsonnet) build on them.
local util = import 'lib/util.libsonnet';

{
  prometheusRules+:: {
    local c = $._config,
    local h = (import 'lib/alerting.libsonnet')(c),

    groups+: [
      {
        '#':: |||
          ---------------------------------------------------------------------------------------------
          Recording rules.

          %(hostFailures)s: for every host that failed its LAST
          probe, each (code, reason) it failed with during the last %(window)s; the value is that number of
          failures. The host part comes from the mailflow_probe_success gauge (so an alert resolves at
          the first good probe) and the code/reason part from the failures counter (so the per-code
          alerts carry connector, host, code and reason as labels, stable from one evaluation to the
          next). The window must hold at least one probe interval (default 60s) plus a scrape.

          %(connectorRole)s: each connector's role (label role of
          mailflow_connector_info), one series per connector: the info as scraped now, or, while a
          scrape fails, as last scraped. Connector alerts join it for their severity; a role that
          changes with a reload replaces the old series at the next scrape.
          ---------------------------------------------------------------------------------------------
        ||| % { hostFailures: h.hostFailures, connectorRole: h.connectorRole, window: c.thresholds.hostFailureWindow },
        name: 'mailflow-recording',
        rules: [
          {
            record: h.hostFailures,
            expr: |||
              (increase(%(failures)s[%(window)s]) > 0)
              and ignoring (code, reason)
              (%(success)s == 0)
            ||| % {
              failures: h.m('mailflow_probe_failures_total'),
              window: c.thresholds.hostFailureWindow,
              success: h.lo('mailflow_probe_success'),
            },
          },
          {
            record: h.connectorRole,
            expr: |||
              max by (%(key)s, role) (%(info)s)
              or on (%(key)s)
              topk by (%(key)s) (1,
                max by (%(key)s, role) (%(infoLast)s)
              )
            ||| % {
              key: h.connectorKey,
              info: h.m('mailflow_connector_info'),
              infoLast: h.lo('mailflow_connector_info'),
            },
          },
        ],
      },
    ],
  },
}
