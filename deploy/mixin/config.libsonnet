// The configuration of the mailflow-exporter mixin. Override any field from your own jsonnet:
//
//   (import 'mixin.libsonnet') + { _config+:: { selector: 'job="mailflow", namespace="mail"' } }
//
// deploy/mixin/README.md describes every field; build.sh writes the files of this repository with
// the defaults below.
{
  _config+:: {
    // PromQL matchers that select the agent's series: every expression of the rules uses them, and
    // the dashboards' `job` variable lists the jobs they match. prometheus-operator names the job
    // after the Service (deploy/kubernetes: mailflow-exporter); so does deploy/prometheus.
    selector: 'job="mailflow-exporter"',

    // Labels in which two replicas of the agent differ (two full replicas probing the same
    // connectors for high availability): the target address `instance`, and `pod` under
    // Kubernetes. Every other label (job, namespace, service, container, endpoint) is the same.
    haReplicaLabels: ['instance', 'pod'],
    // false: the rules work per replica, and Prometheus drops haReplicaLabels from the alerts it
    // sends (prometheusAlertRelabelConfigs below, as in deploy/prometheus/prometheus.yml), so the
    // replicas' alerts have identical label sets and Alertmanager merges them.
    // true: the connector alerts aggregate `max without (<haReplicaLabels>)` in the rules
    // themselves (for a Prometheus whose alert relabelling you cannot change). Alerts about one
    // agent (down, config, self checks, tenant integration) keep their instance either way.
    haAggregate: false,

    // Severity of an alert, from least to most urgent. Alertmanager routes on it.
    severityOrder: ['info', 'warning', 'critical'],

    // Connector roles: the label `role` of mailflow_connector_info. A connector alert gets the
    // lower of its own severity (alertSeverity) and its connector's role severity, and the role's
    // `priority` label (P1 most urgent). A test-mode connector carries no production mail and a
    // rule-scoped one only what a transport rule sends: never more than a warning. A centralized
    // one (RouteAllMessagesViaOnPremises) carries all of the tenant's external mail: critical and
    // P1. Standard and hybrid (CloudServicesMailEnabled, the path to on-premises Exchange):
    // critical, P2. Route on priority in Alertmanager to page centralized connectors harder.
    // (A role may also set `for: { <alert>: '3m' }`; that makes a second rule of the same name,
    // which `promtool check rules` reports as a duplicate, so the defaults use priority instead.)
    roles: {
      test: { severity: 'warning', priority: 'P3' },
      rule_scoped: { severity: 'warning', priority: 'P3' },
      standard: { severity: 'critical', priority: 'P2' },
      hybrid: { severity: 'critical', priority: 'P2' },
      centralized: { severity: 'critical', priority: 'P1' },
    },
    // The role of a connector whose info carries no role (agents before the label) or one not
    // listed above.
    defaultRole: 'standard',

    // Each alert's own severity (connector alerts: before the role caps it).
    alertSeverity: {
      perCode: 'warning',  // the seven per-code alerts (one failing host)
      MailflowConnectorDown: 'critical',
      MailflowQueueAgeing: 'critical',
      MailflowMessagesExpiringSoon: 'critical',
      MailflowExoMailHeld: 'critical',
      MailflowExoMessagesNearExpiry: 'critical',
      MailflowVantageMismatch: 'warning',
      MailflowCertificateExpiresSoon: 'warning',
      MailflowCertificateExpiresVerySoon: 'critical',
      MailflowCertificateExpired: 'critical',
      MailflowConnectorNotProbed: 'warning',
      MailflowExoAuthFailing: 'warning',
      MailflowExoPermissionMissing: 'warning',
      MailflowExoDataStale: 'warning',
      MailflowExoThrottled: 'warning',
      MailflowExoSyncFailing: 'warning',
      MailflowAgentDown: 'warning',
      MailflowAgentAbsent: 'warning',
      MailflowConfigReloadFailed: 'warning',
      MailflowAgentDnsUnreachable: 'critical',
      MailflowAgentOutboundPort25Blocked: 'critical',
      MailflowManyConnectorsFailing: 'critical',
    },

    // `for:` of each alert ('0s': none; the queue and expiry alerts carry their time in the
    // threshold). The agent's own faults must fire before the connector alerts they mute, so
    // their `for:` is shorter than every MailflowConnectorDown `for:` (checked when building).
    alertFor: {
      perCode: '10m',  // the window of the per-host recording rule must hold a probe: see thresholds
      MailflowConnectorDown: '5m',  // about five failed probes at the default 60s interval
      MailflowQueueAgeing: '0s',
      MailflowMessagesExpiringSoon: '0s',
      MailflowExoMailHeld: '0s',
      MailflowExoMessagesNearExpiry: '0s',
      MailflowVantageMismatch: '15m',
      MailflowCertificateExpiresSoon: '15m',
      MailflowCertificateExpiresVerySoon: '15m',
      MailflowCertificateExpired: '5m',
      MailflowConnectorNotProbed: '5m',
      MailflowExoAuthFailing: '10m',  // two failed polls at the default 5-minute poll_interval
      MailflowExoPermissionMissing: '10m',
      MailflowExoDataStale: '0s',
      MailflowExoThrottled: '15m',
      MailflowExoSyncFailing: '20m',  // two failed syncs at the default 15-minute sync_interval
      MailflowAgentDown: '5m',
      MailflowAgentAbsent: '10m',
      MailflowConfigReloadFailed: '5m',
      MailflowAgentDnsUnreachable: '2m',
      MailflowAgentOutboundPort25Blocked: '2m',
      MailflowManyConnectorsFailing: '2m',
    },

    // Thresholds (the rule file used to mark them TUNE).
    thresholds: {
      hostFailureWindow: '10m',  // per-host recording rule: holds at least one probe interval plus a scrape
      queueAgeMinutes: 15,  // MailflowQueueAgeing and MailflowExoMailHeld (keep them equal)
      expiryHours: 4,  // MailflowMessagesExpiringSoon and MailflowExoMessagesNearExpiry (keep equal)
      tenantFreshMinutes: 20,  // tenant data older than this is stale (MailflowExoDataStale)
      mismatchAgeMinutes: 10,  // MailflowVantageMismatch: held this long means deferred
      certificateWarningDays: 21,
      certificateCriticalDays: 7,
      notProbedMinutes: 10,  // above three times the longest per-connector interval
      manyConnectorsRatio: 0.5,  // MailflowManyConnectorsFailing: this share of the agent's connectors ...
      manyConnectorsMin: 3,  // ... and at least this many, failing with one code
    },

    // Links in the alerts' annotations.
    runbookBaseUrl: 'https://git.example.com/mailflow-exporter/blob/main',  // + /docs/runbooks/...
    dashboardUrlBase: 'https://grafana.example.com',  // + /d/<uid>?var-...

    // Dashboards.
    dashboardUidPrefix: 'mailflow',  // uids <prefix>-overview, -connector, -certificates
    dashboardTitlePrefix: 'Mailflow: ',
    dashboardTags: ['mailflow', 'exchange-online'],

    // Kubernetes manifests (deploy/kubernetes/prometheusrule.yaml, dashboards-configmap.yaml).
    kubernetes: {
      name: 'mailflow-exporter',
      namespace: null,  // null: the namespace of `kubectl apply -n`
      labels: { 'app.kubernetes.io/name': 'mailflow-exporter', 'app.kubernetes.io/part-of': 'mailflow-exporter' },
      // Extra labels your prometheus-operator's ruleSelector wants (e.g. release: prometheus).
      ruleLabels: {},
      // Grafana's dashboard sidecar picks up ConfigMaps with this label.
      dashboardLabels: { grafana_dashboard: '1' },
      dashboardAnnotations: {},  // e.g. { grafana_folder: 'Mail flow' } with the sidecar's folderAnnotation
    },

    // The taxonomy (codes, titles, reasons, per-code alert names, runbooks): docs/codes.json,
    // generated from src/taxonomy.rs. Point this elsewhere when the mixin is vendored alone.
    codes: (import '../../docs/codes.json').codes,
  },
}
