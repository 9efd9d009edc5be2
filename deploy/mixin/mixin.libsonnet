// The mailflow-exporter monitoring mixin: recording rules, alerts and Grafana dashboards for the
// agent's metrics, configured by config.libsonnet.
//
//   local mixin = (import 'mixin.libsonnet') + { _config+:: { selector: 'job="mailflow"' } };
//   { groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups }   // a rule file
//   mixin.grafanaDashboards['mailflow-overview.json']                          // a dashboard
//
// build.sh writes the files this repository ships (alerts/, dashboards/, deploy/kubernetes/).
(import 'config.libsonnet')
+ (import 'rules.libsonnet')
+ (import 'alerts.libsonnet')
+ (import 'dashboards.libsonnet')
+ {
  local c = $._config,
  local h = (import 'lib/alerting.libsonnet')(c),

  // Prometheus' alerting.alert_relabel_configs that make the alerts of two HA replicas identical:
  // the labels that differ between replicas are removed from the alerts of this mixin (by name,
  // so other alerts of the same Prometheus keep theirs). Empty with haAggregate: the rules
  // already merge the replicas.
  prometheusAlertRelabelConfigs:: if c.haAggregate then [] else [
    {
      source_labels: ['alertname'],
      regex: 'Mailflow.+',
      target_label: label,
      replacement: '',
    }
    for label in c.haReplicaLabels
  ],

  // Checks of the configuration that the rules rely on.
  local forSeconds(d) =
    local n = std.parseInt(std.rstripChars(d, 'smhdwy'));
    local u = std.substr(d, std.length(std.rstripChars(d, 'smhdwy')), 10);
    n * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 }[u],
  local downFors = [c.alertFor.MailflowConnectorDown] + [
    r['for'].MailflowConnectorDown
    for r in std.objectValues(c.roles)
    if std.objectHas(std.get(r, 'for', {}), 'MailflowConnectorDown')
  ],
  assert std.length([ok for ok in [
    forSeconds(c.alertFor[a]) < forSeconds(d)
    for a in ['MailflowAgentDnsUnreachable', 'MailflowAgentOutboundPort25Blocked', 'MailflowManyConnectorsFailing']
    for d in downFors
  ] if !ok]) == 0 : 'the self-check and MailflowManyConnectorsFailing for: must be shorter than every MailflowConnectorDown for: (they mute it)',
}
