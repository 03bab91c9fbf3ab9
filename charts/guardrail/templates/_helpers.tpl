{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "guardrail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name. */}}
{{- define "guardrail.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "guardrail.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "guardrail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "guardrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{/* Labels of every resource, without the component (webhook or sidecar). */}}
{{- define "guardrail.baseLabels" -}}
helm.sh/chart: {{ include "guardrail.chart" . }}
app.kubernetes.io/name: {{ include "guardrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: guardrail
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "guardrail.labels" -}}
{{ include "guardrail.baseLabels" . }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "guardrail.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "guardrail.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the ValidatingWebhookConfiguration (also the ClusterRole's resourceName). */}}
{{- define "guardrail.webhookName" -}}
{{- default (include "guardrail.fullname" .) .Values.webhook.name }}
{{- end }}

{{- define "guardrail.tlsSecretName" -}}
{{- if eq .Values.tls.mode "selfManaged" }}
{{- default (printf "%s-tls" (include "guardrail.fullname" .)) .Values.tls.selfManaged.secretName }}
{{- else if eq .Values.tls.mode "certManager" }}
{{- default (printf "%s-serving-tls" (include "guardrail.fullname" .)) .Values.tls.certManager.secretName }}
{{- else }}
{{- required "tls.secret.name is required with tls.mode=secret: a kubernetes.io/tls Secret for the webhook Service" .Values.tls.secret.name }}
{{- end }}
{{- end }}

{{/* Whether the serving certificate is a mounted Secret (secret and certManager modes). */}}
{{- define "guardrail.mountsTLS" -}}
{{- if or (eq .Values.tls.mode "secret") (eq .Values.tls.mode "certManager") }}true{{ end }}
{{- end }}

{{/* The Certificate cert-manager's cainjector takes the caBundle from, if any. */}}
{{- define "guardrail.injectCAFrom" -}}
{{- if eq .Values.tls.mode "certManager" }}
{{- printf "%s/%s-serving" .Release.Namespace (include "guardrail.fullname" .) }}
{{- else if eq .Values.tls.mode "secret" }}
{{- .Values.tls.secret.certManagerInjectFrom }}
{{- end }}
{{- end }}

{{/* repository@digest, or repository:tag when no digest is given. */}}
{{- define "guardrail.image" -}}
{{- $digest := .Values.image.digest }}
{{- if $digest }}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $digest) }}
{{- fail (printf "image.digest %q is not a sha256 digest: expected sha256:<64 lowercase hex> (look it up with `crane digest %s:<tag>`)" $digest .Values.image.repository) }}
{{- end }}
{{- if .Values.image.tag }}
{{- printf "%s:%s@%s" .Values.image.repository .Values.image.tag $digest }}
{{- else }}
{{- printf "%s@%s" .Values.image.repository $digest }}
{{- end }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Cross-field checks that a JSON schema cannot express; each names the values to fix. */}}
{{- define "guardrail.validate" -}}
{{- if le (int .Values.webhook.timeoutSeconds) (int .Values.server.requestTimeoutSeconds) }}
{{- fail (printf "webhook.timeoutSeconds (%d) must be above server.requestTimeoutSeconds (%d): the API server would time out before Guardrail answers" (int .Values.webhook.timeoutSeconds) (int .Values.server.requestTimeoutSeconds)) }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.server.drainTimeoutSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above server.drainTimeoutSeconds (%d), or Kubernetes kills the webhook mid-drain" (int .Values.terminationGracePeriodSeconds) (int .Values.server.drainTimeoutSeconds)) }}
{{- end }}
{{- if eq .Values.tls.mode "secret" }}
{{- if and (not .Values.tls.secret.caBundle) (not .Values.tls.secret.certManagerInjectFrom) }}
{{- fail "tls.mode=secret needs tls.secret.caBundle (base64 PEM of the CA that signed the Secret's certificate) or tls.secret.certManagerInjectFrom (<namespace>/<Certificate>)" }}
{{- end }}
{{- end }}
{{- end }}
