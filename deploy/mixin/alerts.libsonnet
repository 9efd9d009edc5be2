// Alerting rules. Every expression selects the agent's series with _config.selector; connector
// alerts take their severity from the connector's role (lib/alerting.libsonnet: connectorAlert).
//
// Annotation texts are written over several lines here and folded into one line (util.fold), as
// YAML's `>-` did in the hand-written rule file. `@NAME@` marks a template query filled in below.
//
// Summaries are the same for every alert of one Alertmanager notification group (group_by
// alertname and connector in deploy/alertmanager/alertmanager.yml): they name the connector at
// most, never a host, an instance or a value. Those go into the description.
local util = import 'lib/util.libsonnet';

local subst(s, kv) = std.foldl(function(acc, k) std.strReplace(acc, '@' + k + '@', kv[k]), std.objectFields(kv), s);
local text(s, kv={}) = util.fold(subst(s, kv));

{
  prometheusAlerts+:: {
    local c = $._config,
    local h = (import 'lib/alerting.libsonnet')(c),
    // Template queries: per replica for agent alerts, merged like the alert for connector alerts.
    local qa = h.tq(false),
    local qc = h.tq(c.haAggregate),
    local t = c.thresholds,
    local codes = c.codes,

    // The code's title, from a template variable holding a code: {{ if eq $code "4.4.312" }}DNS query failed ...
    local titleOf(var) =
      std.join('\n{{- else ', [
        'if eq ' + var + ' "' + x.code + '" }}' + x.title
        for x in codes
        if x.code != 'other'
      ]) + '\n{{- else }}' + [x.title for x in codes if x.code == 'other'][0] + '{{ end }}',
    local codeTitleChain(var) = '{{ ' + titleOf(var),

    // The connector's current code, in $code ("other" when unknown).
    local currentCode =
      '{{ $code := "other" -}}\n{{ range '
      + qc.query(qc.lo('mailflow_connector_status', 'connector=%q') + ' == 1', '$labels.connector')
      + ' }}{{ $code = .Labels.code }}{{ end -}}\n',
    // The runbook of the connector's current code.
    local currentCodeRunbook = util.fold(currentCode + h.runbook('docs/runbooks/{{ $code }}.md')),

    local connectorDashboard = h.dashboardUrl('connector', connector=true),
    local certificatesDashboard = h.dashboardUrl('certificates', connector=true),
    local overviewDashboard = h.dashboardUrl('overview'),
    local agentRunbook = h.runbook('alerts/README.md#agent-and-config-alerts'),
    local tenantRunbook(anchor) = h.runbook('docs/runbooks/tenant/alerts.md#' + anchor),

    local up = qc.query(qc.lo('mailflow_connector_up', 'connector=%q'), '$labels.connector'),
    local info = qc.query(qc.lo('mailflow_connector_info', 'connector=%q'), '$labels.connector'),

    // ------------------------------------------------------------------------------------------
    // Delivery, per host and code.
    // ------------------------------------------------------------------------------------------
    local perCode(x) =
      local reasons = std.join('\n{{- else ', [
        'if eq $labels.reason "' + r.reason + '" }}' + r.description
        for r in x.reasons
      ]);
      h.connectorAlert(
        x.alert,
        h.m(h.hostFailures, 'code="' + x.code + '"'),
        severity=h.severity('perCode'),
        forDefault=h.forOf('perCode'),
        labels={ code: x.code },
        annotations={
          summary: 'Connector {{ $labels.connector }}: ' + (if x.code == 'other' then x.title else x.code + ' ' + x.title) + '.',
          description: text(|||
            Probes of {{ $labels.host }} for connector "{{ $labels.connector }}" @FAIL@,
            reason {{ $labels.reason }}:
            {{ @REASONS@
            {{- else }}see the status page{{ end }}.
            {{- range @UP@ }}
            {{- if eq .Value 1.0 }} The connector still delivers through its other hosts.
            {{- else }} The connector is not delivering: Exchange Online queues its mail.{{ end }}
            {{- end }}
          |||, {
            FAIL: if x.code == 'other' then 'fail outside the documented connector codes' else 'fail with ' + x.smtp_prefix + ' ' + x.title,
            REASONS: reasons,
            UP: up,
          }),
          runbook_url: h.runbook(x.runbook),
          dashboard_url: connectorDashboard,
        },
      ),

    local deliveryGroup = {
      '#':: |||
        ---------------------------------------------------------------------------------------------
        Delivery, per host and code, from the recording rule %s.

        One alert per Exchange Online code, per (connector, host, reason). A host can fail while the
        connector still delivers through another host (a broken backup MX); these alerts are then the
        only sign of it, so they are warnings. When the whole connector fails, MailflowConnectorDown
        pages and Alertmanager mutes these. Alertmanager groups them by (alertname, connector): one
        notification per connector and code, listing the hosts.

        Connector alerts join the connector's role (%s) for their severity:
        the lower of the alert's own and the role's (test, rule_scoped: warning; standard, hybrid,
        centralized: critical). A connector without a role record alerts with the default role.
        ---------------------------------------------------------------------------------------------
      ||| % [h.hostFailures, h.connectorRole],
      name: 'mailflow-delivery',
      rules: std.flattenArrays([perCode(x) for x in codes]) + h.connectorAlert(
        'MailflowConnectorDown',
        h.lo('mailflow_connector_up') + ' == 0',
        comment=|||
          The whole connector fails: at its last probes, some route (the smart hosts, or one
          recipient domain's MX set) had no host that accepted. Exchange Online queues the mail.
          One alert per connector; the code, failing hosts and queue clock are in the annotations
          (not labels), so a change of code during an outage does not start a new alert.
        |||,
        annotations={
          summary: 'Connector {{ $labels.connector }} is not delivering.',
          description: text(currentCode + |||
            Connector "{{ $labels.connector }}" fails with {{ $code }} @TITLE@.
            At its last probes, no host of at least one route accepted{{ range @SINCE@ }}{{ if gt .Value 0.0 }}, and none has since {{ .Value | humanizeTimestamp }}{{ end }}{{ end }}.
            Failing hosts:
            {{- range $i, $s := @HOSTS@ | sortByLabel "host" }}
            {{- if $i }},{{ end }} {{ $s.Labels.host }} ({{ $s.Labels.code }} {{ $s.Labels.reason }})
            {{- else }} none recorded yet{{ end }}.
            Exchange Online would be queueing its mail
            {{- range @AGE@ }}: the oldest message is {{ .Value | humanizeDuration }} old{{ end }}
            {{- range @LEFT@ }}, its sender gets an NDR in {{ .Value | humanizeDuration }}{{ end }}.
            {{- range @MISMATCH@ }}
            {{- range @HELD@ }} Exchange Online's own message trace confirms it: {{ printf "%.0f" .Value }} message{{ if ne .Value 1.0 }}s{{ end }} held.
            {{- else }} Exchange Online's own message trace shows nothing held for this connector: if that stays so, Microsoft 365 reaches its hosts and the failure is this agent's vantage point.{{ end }}
            {{- end }}
          |||, {
            TITLE: codeTitleChain('$code'),
            SINCE: qc.query(qc.lo('mailflow_connector_failing_since_timestamp_seconds', 'connector=%q'), '$labels.connector'),
            HOSTS: qc.query(qc.sel(h.hostFailures, 'connector=%q'), '$labels.connector'),
            AGE: qc.query(qc.lo('mailflow_connector_queue_oldest_age_seconds', 'connector=%q'), '$labels.connector'),
            LEFT: qc.query(qc.lo('mailflow_connector_queue_time_left_seconds', 'connector=%q'), '$labels.connector'),
            // The mismatch gauge exists only while the tenant data is fresh.
            MISMATCH: qc.query(qc.lo('mailflow_connector_vantage_mismatch', 'connector=%q'), '$labels.connector'),
            HELD: qc.query('sum(' + qc.lo('mailflow_exo_pending_messages', 'connector=%q') + ')', '$labels.connector'),
          }),
          runbook_url: currentCodeRunbook,
          dashboard_url: connectorDashboard,
        },
      ),
    },

    // ------------------------------------------------------------------------------------------
    // The queue: the agent's queue clock, and Exchange Online's own (with a tenant).
    // ------------------------------------------------------------------------------------------
    local tenantFresh = '(time() - ' + h.lo('mailflow_exo_last_success_timestamp_seconds') + ' < ' + t.tenantFreshMinutes + ' * 60)',
    local exoCodes =
      std.join('\n', [
        '{{- ' + (if i == 0 then 'if' else 'else if') + ' eq $s.Labels.code "' + codes[i].code + '" }} '
        + (if codes[i].code == 'other' then '(a code outside the connector codes)' else codes[i].title)
        for i in std.range(0, std.length(codes) - 1)
      ]) + '\n{{- else }} (reason not read yet){{ end }}',
    local exoTopCode =
      '{{ $code := "" -}}\n{{ range '
      + qc.query('topk(1, ' + qc.lo('mailflow_exo_pending_messages', 'connector=%q,code!="unknown"') + ')', '$labels.connector')
      + ' }}{{ $code = .Labels.code }}{{ end -}}\n',
    local exoHeld = qc.query('sum(' + qc.lo('mailflow_exo_pending_messages', 'connector=%q') + ')', '$labels.connector'),
    local messages = '{{ printf "%.0f" .Value }} message{{ if ne .Value 1.0 }}s{{ end }}',

    local queueGroup = {
      '#':: |||
        ---------------------------------------------------------------------------------------------
        The queue Exchange Online would be holding for a failing connector, from the agent's queue
        clock (persisted across agent restarts). Both gauges are 0 / the full expiration while the
        connector delivers, and the clock stops at the first good probe, so no `for:` is needed.
        MailflowQueueAgeing is muted by Alertmanager while MailflowConnectorDown pages;
        MailflowMessagesExpiringSoon is not (senders are about to get NDRs, which is news).

        With a tenant, Exchange Online's own queue (Graph message trace): while the tenant data is
        fresh the queue clock reads the same oldest message, so the probe-model alerts and their
        Exo twins fire together, with the same thresholds, and Alertmanager mutes the probe-model
        ones. "(unattributed)" mail (domains no connector names) never alerts; a read older than
        %d minutes does not page (MailflowExoDataStale says the data is old instead).
        ---------------------------------------------------------------------------------------------
      ||| % t.tenantFreshMinutes,
      name: 'mailflow-queue',
      rules:
        h.connectorAlert(
          'MailflowQueueAgeing',
          h.lo('mailflow_connector_queue_oldest_age_seconds') + ' > ' + t.queueAgeMinutes + ' * 60',
          comment="Microsoft's own \"Messages have been delayed\" alert waits for an hour (and for hundreds of messages).",
          annotations={
            summary: 'Connector {{ $labels.connector }}: mail has been queued for over ' + h.minutes(t.queueAgeMinutes) + '.',
            description: text(|||
              The oldest message Exchange Online would hold for connector "{{ $labels.connector }}" is
              {{ $value | humanizeDuration }} old
              {{- range @SINCE@ }}: nothing was delivered since {{ .Value | humanizeTimestamp }}{{ end }}.
              Exchange Online's own "Messages have been delayed" alert fires only after an hour.
            |||, { SINCE: qc.query(qc.lo('mailflow_connector_failing_since_timestamp_seconds', 'connector=%q'), '$labels.connector') }),
            runbook_url: currentCodeRunbook,
            dashboard_url: connectorDashboard,
          },
        )
        + h.connectorAlert(
          'MailflowMessagesExpiringSoon',
          |||
            (%s < %d * 3600)
            and
            (%s > 0)
          ||| % [h.lo('mailflow_connector_queue_time_left_seconds'), t.expiryHours, h.lo('mailflow_connector_queue_oldest_age_seconds')],
          comment='The age guard keeps healthy connectors silent even when the configured expiration itself is short. $value 0: messages are being returned.',
          annotations={
            summary: 'Connector {{ $labels.connector }}: queued messages expire in under ' + h.hours(t.expiryHours) + ', then senders get NDRs.',
            description: text(|||
              The oldest message Exchange Online would hold for connector "{{ $labels.connector }}" is
              {{ range @AGE@ }}{{ .Value | humanizeDuration }}{{ end }}
              old; messages expire after
              {{ range @EXPIRY@ }}{{ .Value | humanizeDuration }}{{ end }}.
              {{ if eq $value 0.0 }}Messages that old are being returned to their senders
              (550 4.4.7 QUEUE.Expired).
              {{- else }}In {{ $value | humanizeDuration }} the oldest queued message expires and its sender gets an NDR.{{ end }}
              Fix the connector now, or tell the affected senders.
            |||, {
              AGE: qc.query(qc.lo('mailflow_connector_queue_oldest_age_seconds', 'connector=%q'), '$labels.connector'),
              EXPIRY: qc.query(qc.lo('mailflow_connector_queue_expiry_seconds', 'connector=%q'), '$labels.connector'),
            }),
            runbook_url: currentCodeRunbook,
            dashboard_url: connectorDashboard,
          },
        )
        + h.connectorAlert(
          'MailflowExoMailHeld',
          |||
            (%s > %d * 60)
            and on (job, instance)
            %s
          ||| % [h.lo('mailflow_exo_oldest_pending_age_seconds', 'connector!="(unattributed)"'), t.queueAgeMinutes, tenantFresh],
          comment='Equal to MailflowQueueAgeing, which it mutes. Microsoft retries a deferred message after about 15 minutes: raise both to 30 to let single deferrals clear at that retry.',
          annotations={
            summary: 'Connector {{ $labels.connector }}: Exchange Online has held mail for over ' + h.minutes(t.queueAgeMinutes) + '.',
            description: text(exoTopCode + |||
              Exchange Online's own message trace shows
              {{ range @HELD@ }}@MESSAGES@{{ end }}
              pending for connector "{{ $labels.connector }}", the oldest for {{ $value | humanizeDuration }}.
              By the code of their last deferral:
              {{- range $i, $s := @PENDING@ | sortByLabel "code" }}
              {{- if $i }},{{ end }} {{ $s.Labels.code }}
              @CODES@: {{ printf "%.0f" $s.Value }}
              {{- end }}.
              {{- range @UP@ }}
              {{- if eq .Value 1.0 }} This agent's own probe still delivers to the connector's hosts: Microsoft 365 is treated differently from the agent (see MailflowVantageMismatch).
              {{- else }} This agent's probe fails too.{{ end }}{{ end }}
              {{- range @LEFT@ }}
              {{- if gt .Value 0.0 }} The oldest one turns into an NDR in {{ .Value | humanizeDuration }}.
              {{- else }} The oldest ones are expiring now: their senders get NDRs.{{ end }}{{ end }}
              {{- if $code }} Fixes for {{ $code }}: @RUNBOOK@{{ end }}
            |||, {
              HELD: exoHeld,
              MESSAGES: messages,
              PENDING: qc.query(qc.lo('mailflow_exo_pending_messages', 'connector=%q'), '$labels.connector'),
              CODES: exoCodes,
              UP: up,
              LEFT: qc.query(qc.lo('mailflow_exo_oldest_pending_time_left_seconds', 'connector=%q'), '$labels.connector'),
              RUNBOOK: h.runbook('docs/runbooks/{{ $code }}.md'),
            }),
            runbook_url: tenantRunbook('mailflowexomailheld'),
            dashboard_url: connectorDashboard,
          },
        )
        + h.connectorAlert(
          'MailflowExoMessagesNearExpiry',
          |||
            (%s < %d * 3600)
            and
            (%s > 0)
            and on (job, instance)
            %s
          ||| % [
            h.lo('mailflow_exo_oldest_pending_time_left_seconds', 'connector!="(unattributed)"'),
            t.expiryHours,
            h.lo('mailflow_exo_oldest_pending_age_seconds'),
            tenantFresh,
          ],
          comment='Equal to MailflowMessagesExpiringSoon, which it mutes. $value 0: messages are bouncing now.',
          annotations={
            summary: 'Connector {{ $labels.connector }}: messages Exchange Online holds expire in under ' + h.hours(t.expiryHours) + ', then senders get NDRs.',
            description: text(|||
              Exchange Online holds
              {{ range @HELD@ }}@MESSAGES@{{ end }}
              for connector "{{ $labels.connector }}" (its own message trace); the oldest has been held for
              {{ range @AGE@ }}{{ .Value | humanizeDuration }}{{ end }}
              and messages expire after
              {{ range @EXPIRY@ }}{{ .Value | humanizeDuration }}{{ end }}.
              {{ if eq $value 0.0 }}Messages that old are being returned to their senders (550 4.4.7 QUEUE.Expired), naming the last error.
              {{- else }}In {{ $value | humanizeDuration }} the oldest one expires and its sender gets an NDR naming the last error.{{ end }}
              Last errors:
              {{- range $i, $s := @PENDING@ | sortByLabel "code" }}
              {{- if $i }},{{ end }} {{ $s.Labels.code }}: {{ printf "%.0f" $s.Value }}
              {{- end }}.
              Fix the connector now, or tell the affected senders.
            |||, {
              HELD: exoHeld,
              MESSAGES: messages,
              AGE: qc.query(qc.lo('mailflow_exo_oldest_pending_age_seconds', 'connector=%q'), '$labels.connector'),
              EXPIRY: qc.query(qc.lo('mailflow_connector_queue_expiry_seconds', 'connector=%q'), '$labels.connector'),
              PENDING: qc.query(qc.lo('mailflow_exo_pending_messages', 'connector=%q'), '$labels.connector'),
            }),
            runbook_url: tenantRunbook('mailflowexomessagesnearexpiry'),
            dashboard_url: connectorDashboard,
          },
        ),
    },

    // ------------------------------------------------------------------------------------------
    // Certificates.
    // ------------------------------------------------------------------------------------------
    local certDescription(when, validates, doesNot) = text(|||
      The certificate {{ $labels.subject }} (issuer {{ $labels.issuer }}, serial {{ $labels.serial }})
      presented by {{ $labels.host }} for connector "{{ $labels.connector }}" @WHEN@.
      {{- range @INFO@ }}
      {{- if or (eq .Labels.tls_settings "certificate-validation") (eq .Labels.tls_settings "domain-validation") }}
      The connector validates certificates ({{ .Labels.tls_settings }}): @VALIDATES@
      {{- else }}
      The connector does not validate certificates ({{ .Labels.tls_settings }}), @DOESNOT@
      {{- end }}{{ end }}
    |||, { WHEN: when, INFO: info, VALIDATES: validates, DOESNOT: doesNot }),
    local notAfter = h.lo('mailflow_tls_certificate_not_after_timestamp_seconds', 'position="leaf"'),

    local certificatesGroup = {
      '#':: |||
        ---------------------------------------------------------------------------------------------
        Server certificates (leaf only) that the hosts presented at their last TLS handshake, also
        those that failed validation. One alert per connector, host and certificate; the three
        alerts do not overlap (%d-%d days, under %d days, expired). Whether an expiry breaks delivery
        depends on the connector's TlsSettings, which the description states.
        ---------------------------------------------------------------------------------------------
      ||| % [t.certificateWarningDays, t.certificateCriticalDays, t.certificateCriticalDays],
      name: 'mailflow-certificates',
      rules:
        h.connectorAlert(
          'MailflowCertificateExpiresSoon',
          notAfter + ' - time()\n  < ' + t.certificateWarningDays + ' * 86400 >= ' + t.certificateCriticalDays + ' * 86400\n',
          comment='Seconds left, kept when between %d and %d days.' % [t.certificateCriticalDays, t.certificateWarningDays],
          annotations={
            summary: 'Connector {{ $labels.connector }}: a certificate expires in under ' + t.certificateWarningDays + ' days.',
            description: certDescription(
              'expires in {{ $value | humanizeDuration }}',
              'once it expires, Exchange Online stops delivering with 4.7.320.',
              'but renew it anyway.'
            ),
            runbook_url: h.runbook('docs/runbooks/4.7.320.md'),
            dashboard_url: certificatesDashboard,
          },
        )
        + h.connectorAlert(
          'MailflowCertificateExpiresVerySoon',
          notAfter + ' - time()\n  < ' + t.certificateCriticalDays + ' * 86400 > 0\n',
          comment='Seconds left, kept when under %d days.' % t.certificateCriticalDays,
          annotations={
            summary: 'Connector {{ $labels.connector }}: a certificate expires in under ' + t.certificateCriticalDays + ' days.',
            description: certDescription(
              'expires in {{ $value | humanizeDuration }}',
              'once it expires, Exchange Online stops delivering with 4.7.320.',
              'but renew it anyway.'
            ),
            runbook_url: h.runbook('docs/runbooks/4.7.320.md'),
            dashboard_url: certificatesDashboard,
          },
        )
        + h.connectorAlert(
          'MailflowCertificateExpired',
          'time() - ' + notAfter + '\n  >= 0\n',
          comment='Seconds since expiry.',
          annotations={
            summary: 'Connector {{ $labels.connector }}: a certificate has expired.',
            description: certDescription(
              'expired {{ $value | humanizeDuration }} ago',
              'Exchange Online does not deliver to this host (4.7.320).',
              'so delivery continues; renew it anyway.'
            ),
            runbook_url: h.runbook('docs/runbooks/4.7.320.md'),
            dashboard_url: certificatesDashboard,
          },
        ),
    },

    // ------------------------------------------------------------------------------------------
    // The tenant integration.
    // ------------------------------------------------------------------------------------------
    local requests(extra) = h.m('mailflow_exo_requests_total', extra),
    local tenantGroup = {
      '#':: |||
        ---------------------------------------------------------------------------------------------
        The tenant integration (`tenant:` section): where Exchange Online's view and the probe's
        disagree, and whether the agent can read Exchange Online at all. Every series used here
        exists only when a tenant is configured, so agents without one never fire these.

        mailflow_exo_requests_total counts every request by api (token, message_trace,
        message_trace_details, admin_api) and outcome (ok, throttled, unauthorized, forbidden,
        error); all combinations are always exported, so increase() works from the first scrape.
        A 401 is retried once with a new token, so a single "unauthorized" followed by an "ok" is
        the normal expiry of a token: the auth alerts ignore an API that also succeeded.

        Alertmanager mutes MailflowExoDataStale while an auth, permission or throttling alert of the
        queue read (api token or message_trace) explains it, and MailflowExoSyncFailing while one
        of the token or the admin API does.
        ---------------------------------------------------------------------------------------------
      |||,
      name: 'mailflow-tenant',
      rules:
        h.connectorAlert(
          'MailflowVantageMismatch',
          |||
            (%s == 1)
            and on (job, instance, connector)
            (%s > %d * 60)
          ||| % [h.lo('mailflow_connector_vantage_mismatch'), h.lo('mailflow_exo_oldest_pending_age_seconds'), t.mismatchAgeMinutes],
          comment=|||
            Exchange Online holds mail for the connector while this agent's probe delivers to it. The
            gauge exists only while the tenant data is fresh; the age guard ignores mail that is merely
            in transit (also "pending" in message trace). The for: rides over a probe that fails once.
          |||,
          annotations={
            summary: "Connector {{ $labels.connector }}: Exchange Online cannot deliver, but this agent's probe can.",
            description: text(|||
              Exchange Online holds
              {{ range @HELD@ }}@MESSAGES@{{ end }}
              for connector "{{ $labels.connector }}"
              {{- range @AGE@ }} (the oldest for {{ .Value | humanizeDuration }}){{ end }}
              {{- range $i, $s := @CODES@ | sortByLabel "code" }}
              {{- if $i }},{{ else }}, last deferred with{{ end }} {{ $s.Labels.code }}
              {{- end }},
              while the agent at {{ $labels.instance }} delivers to the same connector at every probe.
              Microsoft 365's servers are treated differently from the agent: a firewall or receive
              connector that admits the agent's address but not Microsoft 365's ranges on port 25, a
              server that presents another certificate to unknown sources, or a route Microsoft takes
              and the agent does not
              {{- range @INFO@ }}
              {{- if eq .Labels.source "file" }} (the agent probes the connector as its config file defines it; compare with Get-OutboundConnector in the tenant)
              {{- else }} (the agent probes the connector as synced from the tenant; look for split DNS and a different address family){{ end }}
              {{- end }}.
              The probe-based alerts stay silent for this connector until it is fixed.
            |||, {
              HELD: exoHeld,
              MESSAGES: messages,
              AGE: qc.query(qc.lo('mailflow_exo_oldest_pending_age_seconds', 'connector=%q'), '$labels.connector'),
              CODES: qc.query(qc.lo('mailflow_exo_pending_messages', 'connector=%q,code!="unknown"'), '$labels.connector'),
              INFO: info,
            }),
            runbook_url: tenantRunbook('mailflowvantagemismatch'),
            dashboard_url: connectorDashboard,
          },
        )
        + h.agentAlert(
          'MailflowExoAuthFailing',
          |||
            (
                sum by (job, instance, api) (increase(%s[15m]))
              or
                sum by (job, instance, api) (increase(%s[15m]))
            ) > 0
            unless on (job, instance, api)
              sum by (job, instance, api) (increase(%s[15m])) > 0
          ||| % [
            requests(['api="token"', 'outcome=~"unauthorized|forbidden|error"']),
            requests(['api!="token"', 'outcome="unauthorized"']),
            requests('outcome="ok"'),
          ],
          comment=|||
            Entra ID issues no token (api="token": refused, or failed; a network failure towards
            login_url counts as error too), or an API rejects the token (401 after the retry), and
            that API had no success in the same 15 minutes. One alert per agent and api.
          |||,
          annotations={
            summary: 'A mailflow-exporter cannot authenticate to Microsoft 365.',
            description: text(|||
              The mailflow-exporter at {{ $labels.instance }}
              {{ if eq $labels.api "token" }}gets no token from Microsoft Entra ID.
              {{- else }}has its token rejected by {{ if eq $labels.api "admin_api" }}the Exchange admin API{{ else }}Microsoft Graph ({{ $labels.api }}){{ end }}.{{ end }}
              {{ if eq $labels.api "token" -}}
              {{ printf "%.0f" $value }} token requests failed in the last 15 minutes and none succeeded
              {{- range @OUTCOMES@ | sortByLabel "outcome" }}
              {{- if eq .Labels.outcome "unauthorized" }}; refused as unauthorized: {{ printf "%.0f" .Value }} (secret or certificate wrong, expired or removed from the app registration; wrong client_id)
              {{- else if eq .Labels.outcome "forbidden" }}; refused as forbidden: {{ printf "%.0f" .Value }} (the app or its service principal is disabled, or a policy blocks it)
              {{- else }}; other errors: {{ printf "%.0f" .Value }} (wrong tenant_id or login_url, a federated token the app does not trust, or login_url unreachable){{ end }}
              {{- end }}.
              {{- else if eq $labels.api "admin_api" -}}
              The Exchange admin API answered 401 to {{ printf "%.0f" $value }} requests in the last 15 minutes and accepted none:
              the app lacks the application permission Exchange.ManageAsApp on Office 365 Exchange
              Online, or its admin consent. Only tenant.sync needs it.
              {{- else -}}
              Microsoft Graph answered 401 to {{ printf "%.0f" $value }} {{ $labels.api }} requests in the last 15 minutes and accepted none,
              even with a fresh token: the token is not valid for Graph (wrong tenant, or graph_url does not belong to the login_url's cloud).
              {{- end }}
              The agent's log names Microsoft's error code. The probes go on, but
              {{ if eq $labels.api "admin_api" }}the tenant's connectors are not read (tenant.sync){{ else }}Exchange Online's own queue is not read{{ end }}
              until this is fixed.
            |||, {
              OUTCOMES: qa.query('sum by (outcome) (increase(mailflow_exo_requests_total{api="token",outcome=~"unauthorized|forbidden|error",job=%q,instance=%q}[15m])) > 0'),
            }),
            runbook_url: tenantRunbook('mailflowexoauthfailing'),
            dashboard_url: overviewDashboard,
          },
        )
        + h.agentAlert(
          'MailflowExoPermissionMissing',
          |||
            sum by (job, instance, api) (increase(%s[15m])) > 0
            unless on (job, instance, api)
              sum by (job, instance, api) (increase(%s[15m])) > 0
          ||| % [requests(['api!="token"', 'outcome="forbidden"']), requests('outcome="ok"')],
          comment='An API answers 403 (the token is fine, a permission or role is missing) and had no success in the same 15 minutes. One alert per agent and api.',
          annotations={
            summary: 'A mailflow-exporter lacks a Microsoft 365 permission.',
            description: text(|||
              The mailflow-exporter at {{ $labels.instance }} lacks a permission for
              {{ if eq $labels.api "admin_api" }}the Exchange admin API (tenant.sync){{ else }}message trace ({{ $labels.api }}){{ end }}.
              {{ if eq $labels.api "admin_api" -}}
              The Exchange admin API refused {{ printf "%.0f" $value }} requests in the last 15 minutes (403) and accepted none.
              The app needs an Exchange role as well as Exchange.ManageAsApp: assign View-Only
              Configuration to its service principal in Exchange Online. Until then the tenant's
              connectors, accepted domains and message expiration are not read.
              {{- else -}}
              Microsoft Graph refused {{ printf "%.0f" $value }} {{ $labels.api }} requests in the last 15 minutes (403) and accepted none.
              The app needs the application permission ExchangeMessageTrace.Read.All on Microsoft
              Graph, with admin consent. Until then Exchange Online's queue is not read.
              {{- end }}
              A new permission reaches the agent with its next token (within about an hour, at once
              after a restart).
            |||),
            runbook_url: tenantRunbook('mailflowexopermissionmissing'),
            dashboard_url: overviewDashboard,
          },
        )
        + h.agentAlert(
          'MailflowExoDataStale',
          |||
            (
                time() - %(last)s > %(fresh)d * 60
              and on (job, instance)
                %(last)s > 0
            )
            or
            (
                time() - %(reload)s > %(fresh)d * 60
              and on (job, instance)
                %(last)s == 0
            )
          ||| % {
            last: h.lo('mailflow_exo_last_success_timestamp_seconds'),
            reload: h.lo('mailflow_config_last_reload_success_timestamp_seconds'),
            fresh: t.tenantFreshMinutes,
          },
          comment=|||
            The last good read of Exchange Online's queue is too old, or there has been none since the
            configuration was loaded. The threshold is the time itself, so no `for:` is needed. Keep it
            above three times tenant.poll_interval.
          |||,
          annotations={
            summary: 'A mailflow-exporter has no fresh data from Exchange Online.',
            description: text(|||
              {{ range @LAST@ -}}
              {{ if gt .Value 0.0 }}The agent at {{ $labels.instance }} last read Exchange Online's queue at {{ .Value | humanizeTimestamp }}, {{ $value | humanizeDuration }} ago.
              {{- else }}The agent at {{ $labels.instance }} has not read Exchange Online's queue once since its configuration was loaded {{ $value | humanizeDuration }} ago.{{ end }}
              {{- end }}
              Requests to Microsoft in the last 20 minutes:
              {{- range $i, $s := @REQUESTS@ | sortByLabel "outcome" }}
              {{- if $i }},{{ end }} {{ $s.Labels.outcome }} {{ printf "%.0f" $s.Value }}
              {{- else }} none{{ end }}.
              Meanwhile the alerts on Microsoft's queue are silent and the queue clock uses the
              probe's model. The agent's log says why the reads fail.
            |||, {
              LAST: qa.query(qa.lo('mailflow_exo_last_success_timestamp_seconds')),
              REQUESTS: qa.query('sum by (outcome) (increase(mailflow_exo_requests_total{job=%q,instance=%q}[20m])) > 0'),
            }),
            runbook_url: tenantRunbook('mailflowexodatastale'),
            dashboard_url: overviewDashboard,
          },
        )
        + h.agentAlert(
          'MailflowExoThrottled',
          'sum by (job, instance, api) (increase(%s[10m])) > 0\n' % requests('outcome="throttled"'),
          comment='Microsoft answered 429 in every 10-minute window for the for: duration (a single 429 does not fire: its window closes first). One alert per agent and api.',
          annotations={
            summary: 'Microsoft keeps throttling a mailflow-exporter.',
            description: text(|||
              Microsoft answered {{ $labels.api }} requests of the mailflow-exporter at {{ $labels.instance }}
              with 429 (too many requests) in every 10 minutes for the last 15; in those 15 minutes
              {{ range @THROTTLED@ }}{{ printf "%.0f" .Value }}{{ end }}
              were throttled and
              {{ range @OK@ }}{{ printf "%.0f" .Value }}{{ end }}
              answered.
              {{ if eq $labels.api "message_trace_details" -}}
              Microsoft allows 100 detail requests per 5 minutes for the whole tenant, shared with
              every admin and tool that runs Get-MessageTraceDetailV2; the agent uses at most
              tenant.details_per_5min of them. Meanwhile held messages show code "unknown".
              {{- else -}}
              The agent waits as Microsoft asks (Retry-After); if this lasts, its data goes stale.
              Look for other tools calling the same API with this tenant.
              {{- end }}
            |||, {
              THROTTLED: qa.query('sum(increase(mailflow_exo_requests_total{api=%q,outcome="throttled",job=%q,instance=%q}[15m]))', '$labels.api'),
              OK: qa.query('sum(increase(mailflow_exo_requests_total{api=%q,outcome="ok",job=%q,instance=%q}[15m]))', '$labels.api'),
            }),
            runbook_url: tenantRunbook('mailflowexothrottled'),
            dashboard_url: overviewDashboard,
          },
        )
        + h.agentAlert(
          'MailflowExoSyncFailing',
          h.lo('mailflow_exo_sync_successful') + ' == 0',
          comment='tenant.sync is on and the reads of the tenant configuration keep failing.',
          annotations={
            summary: "A mailflow-exporter cannot read the tenant's connectors.",
            description: text(|||
              The last read of the tenant's outbound connectors, accepted domains and message
              expiration (tenant.sync) by the agent at {{ $labels.instance }} failed.
              {{ range @LAST@ -}}
              {{ if gt .Value 0.0 }}The agent keeps probing
              {{- range @SYNCED@ }} the {{ printf "%.0f" .Value }}{{ end }}
              connectors it read at {{ .Value | humanizeTimestamp }}; changes made in Exchange Online since then are not probed.
              {{- else }}No read has succeeded since the agent started: it probes only the connectors of its file.{{ end }}
              {{- end }}
              A missing permission or role shows as MailflowExoAuthFailing or
              MailflowExoPermissionMissing with api="admin_api"; otherwise the agent's log says why.
            |||, {
              LAST: qa.query(qa.lo('mailflow_exo_sync_last_success_timestamp_seconds')),
              SYNCED: qa.query(qa.lo('mailflow_exo_synced_connectors')),
            }),
            runbook_url: tenantRunbook('mailflowexosyncfailing'),
            dashboard_url: overviewDashboard,
          },
        ),
    },

    // ------------------------------------------------------------------------------------------
    // The agent itself.
    // ------------------------------------------------------------------------------------------
    local infoLabels = [
      'connector_type', 'routing', 'tls_settings', 'tls_domain', 'enabled', 'test_mode', 'source', 'role',
      'route_all_messages_via_on_premises', 'cloud_services_mail_enabled', 'transport_rule_scoped',
      'all_accepted_domains', 'connector_source',
    ],
    local statusFailing(extra=[]) = h.lo('mailflow_connector_status', ['code!="ok"'] + extra) + ' == 1',
    local failingWith(codeList) =
      qa.query('count(' + qa.lo('mailflow_connector_status', 'code=~"' + std.join('|', codeList) + '"') + ' == 1)'),
    local m = t.manyConnectorsMin,

    local agentGroup = {
      '#':: |||
        ---------------------------------------------------------------------------------------------
        The agent itself: without it, none of the alerts above can fire; with its own network broken,
        all of them would fire for reasons that are not the connectors'. The self checks
        (mailflow_self_check_successful) and MailflowManyConnectorsFailing page once for the agent,
        and Alertmanager mutes the connector alerts of the same job and instance they explain.
        Their for: is shorter than MailflowConnectorDown's, so they fire first.
        ---------------------------------------------------------------------------------------------
      |||,
      name: 'mailflow-agent',
      rules:
        h.agentAlert(
          'MailflowAgentDown',
          'up%s == 0' % h.sel(),
          annotations={
            summary: 'A mailflow-exporter cannot be scraped.',
            description: text(|||
              Prometheus cannot scrape {{ $labels.instance }} (job {{ $labels.job }}).
              Until it is back, no connector alert can fire. Its queue clock is kept on disk, so the
              queue ages are right again once it runs.
            |||),
            runbook_url: agentRunbook,
            dashboard_url: overviewDashboard,
          },
        )
        + h.agentAlert(
          'MailflowAgentAbsent',
          'absent(up%s)' % h.sel(),
          comment='The scrape job itself is gone (removed from the configuration or from service discovery).',
          annotations={
            summary: 'Prometheus has no mailflow-exporter target.',
            description: text(|||
              There is no scrape target with @SELECTOR@ any more, so no connector is monitored.
              Check the scrape configuration (deploy/prometheus/prometheus.yml) or, under
              prometheus-operator, the ServiceMonitor and the Service it selects.
            |||, { SELECTOR: c.selector }),
            runbook_url: agentRunbook,
            dashboard_url: overviewDashboard,
          },
        )
        + h.connectorAlert(
          'MailflowConnectorNotProbed',
          |||
            (time() - %(last)s > %(minutes)d * 60)
            or
            (
                max without (%(infoLabels)s)
                  (%(info)s)
              unless on (job, instance, connector)
                %(last)s
            )
          ||| % {
            last: h.lo('mailflow_connector_last_probe_timestamp_seconds'),
            minutes: t.notProbedMinutes,
            infoLabels: std.join(', ', infoLabels),
            info: h.lo('mailflow_connector_info', 'enabled="true"'),
          },
          // One replica's probing loop: never merged across replicas.
          aggregate=false,
          comment=|||
            The agent answers but a connector's probes have stopped: the last probe is too old, or an
            enabled connector has not been probed since the agent started. The info labels are dropped
            (the alert keeps the target's own labels), and `unless` matches on the connector alone.
          |||,
          annotations={
            summary: 'Connector {{ $labels.connector }} is not being probed.',
            description: text(|||
              The agent at {{ $labels.instance }} has not probed connector "{{ $labels.connector }}"
              {{ range @LAST@ -}}
              since {{ .Value | humanizeTimestamp }}
              {{- else -}}
              since it started
              {{- end }}, so what the alerts say about it is out of date. Check the agent's log for stuck probes
              or a hung DNS server.
            |||, { LAST: qa.query(qa.lo('mailflow_connector_last_probe_timestamp_seconds', 'connector=%q'), '$labels.connector') }),
            runbook_url: agentRunbook,
            dashboard_url: connectorDashboard,
          },
        )
        + h.agentAlert(
          'MailflowConfigReloadFailed',
          h.lo('mailflow_config_last_reload_successful') + ' == 0',
          comment='A reload (SIGHUP, POST /-/reload) rejected the file; the agent keeps probing with the previous configuration.',
          annotations={
            summary: 'A mailflow-exporter rejected its new configuration.',
            description: text(|||
              The last configuration reload of the agent at {{ $labels.instance }} failed; it still runs the configuration loaded at
              {{ range @LOADED@ }}{{ .Value | humanizeTimestamp }}{{ end }}.
              The agent's log has the file:line:column of the error.
            |||, { LOADED: qa.query(qa.lo('mailflow_config_last_reload_success_timestamp_seconds')) }),
            runbook_url: agentRunbook,
            dashboard_url: overviewDashboard,
          },
        )
        + h.agentAlert(
          'MailflowAgentDnsUnreachable',
          h.lo('mailflow_self_check_successful', 'check="dns"') + ' == 0',
          comment="None of the agent's resolvers answered its own query: every name it looks up fails (4.4.312).",
          annotations={
            summary: 'A mailflow-exporter cannot resolve names; its connector alerts are muted.',
            description: text(|||
              None of the DNS resolvers of the agent at {{ $labels.instance }} (job {{ $labels.job }})
              answered the agent's own test query, so every connector whose hosts are names fails with
              4.4.312 on this agent
              {{- range @N@ }} ({{ printf "%.0f" .Value }} connectors now){{ end }}.
              That says nothing about the connectors: Alertmanager mutes their 4.4.312, connector-down
              and queue alerts from this agent while this fires. Fix the agent's resolvers (dns.servers
              in its configuration, or the system resolver) or the network path to them.
            |||, { N: failingWith(['4.4.312']) }),
            runbook_url: h.runbook('docs/runbooks/agent/dns-unreachable.md'),
            dashboard_url: overviewDashboard,
          },
        )
        + h.agentAlert(
          'MailflowAgentOutboundPort25Blocked',
          h.lo('mailflow_self_check_successful', 'check="outbound_port_25"') + ' == 0',
          comment='Every recent connection attempt to port 25, to at least 3 different hosts, failed and none succeeded: the network of the agent blocks outbound SMTP.',
          annotations={
            summary: 'A mailflow-exporter cannot connect out to port 25; its connector alerts are muted.',
            description: text(|||
              Every recent connection attempt of the agent at {{ $labels.instance }} (job {{ $labels.job }})
              to port 25, to at least 3 different hosts, failed and none succeeded: its own network
              (a firewall, a security group, the cloud provider or the ISP) blocks outbound SMTP
              {{- range @N@ }} ({{ printf "%.0f" .Value }} connectors fail with 4.4.315, 4.4.316 or 4.4.318 now){{ end }}.
              Alertmanager mutes those connectors' 4.4.315, 4.4.316 and 4.4.318, connector-down and
              queue alerts from this agent while this fires: they describe the agent's network, not the
              partners'. Exchange Online is not affected by the agent's network.
            |||, { N: failingWith(['4.4.315', '4.4.316', '4.4.318']) }),
            runbook_url: h.runbook('docs/runbooks/agent/outbound-port-25-blocked.md'),
            dashboard_url: overviewDashboard,
          },
        )
        + h.agentAlert(
          'MailflowManyConnectorsFailing',
          |||
            (
                count by (job, instance, code) (%(failing)s)
              / on (job, instance) group_left ()
                count by (job, instance) (%(up)s)
            ) >= %(ratio)s
            and
            count by (job, instance, code) (%(failing)s) >= %(min)d
          ||| % {
            failing: statusFailing(),
            up: h.lo('mailflow_connector_up'),
            ratio: t.manyConnectorsRatio,
            min: m,
          },
          comment=|||
            Most connectors of one agent fail with the same code at once: more likely the agent's
            network than every partner. $value is the share of the agent's connectors.
          |||,
          annotations={
            summary: 'Most connectors of a mailflow-exporter fail with the same code.',
            description: text(|||
              {{ $n := 0.0 }}{{ range @COUNT@ }}{{ $n = .Value }}{{ end -}}
              {{ printf "%.0f" $n }} of the connectors probed by the agent at {{ $labels.instance }} (job {{ $labels.job }}),
              {{ $value | humanizePercentage }} of them, fail with {{ $labels.code }} @TITLE@:
              {{- range $i, $s := @LIST@ | sortByLabel "connector" }}
              {{- if lt $i 10 }}{{ if $i }},{{ end }} {{ $s.Labels.connector }}{{ else if eq $i 10 }}, …{{ end }}
              {{- end }}.
              So many at once points at the agent (its network, its resolvers, its clock or CA store)
              more than at every partner: check from another host before calling them. Alertmanager
              mutes this agent's {{ $labels.code }} per-code alerts and its connector-down alerts while
              this fires.
              {{- range $i, $s := @OTHERS@ | sortByLabel "connector" }}
              {{- if $i }},{{ else }} Connectors failing with another code (muted too):{{ end }} {{ $s.Labels.connector }} ({{ $s.Labels.code }})
              {{- end }}
            |||, {
              COUNT: qa.query('count(' + qa.lo('mailflow_connector_status', 'code=%q') + ' == 1)', '$labels.code'),
              TITLE: codeTitleChain('$labels.code'),
              LIST: qa.query(qa.lo('mailflow_connector_status', 'code=%q') + ' == 1', '$labels.code'),
              OTHERS: qa.query(qa.lo('mailflow_connector_status', 'code!=%q,code!="ok"') + ' == 1', '$labels.code'),
            }),
            runbook_url: h.runbook('docs/runbooks/agent/many-connectors-failing.md'),
            dashboard_url: overviewDashboard,
          },
        ),
    },

    groups+: [deliveryGroup, queueGroup, certificatesGroup, tenantGroup, agentGroup],
  },
}
