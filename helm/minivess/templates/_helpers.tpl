{{/* Names and labels shared by every manifest. */}}

{{- define "minivess.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "minivess.fullname" -}}
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

{{- define "minivess.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "minivess.selectorLabels" -}}
app.kubernetes.io/name: {{ include "minivess.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "minivess.labels" -}}
helm.sh/chart: {{ include "minivess.chart" . }}
{{ include "minivess.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: minivess
{{- end }}

{{- define "minivess.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "minivess.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: repository@digest, or repository:tag (appVersion, "-gpu" for the GPU variant). */}}
{{- define "minivess.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if and .Values.gpu.enabled (not .Values.image.tag) }}
{{- $tag = printf "%s-gpu" $tag }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "minivess.secretName" -}}
{{- default (printf "%s-secrets" (include "minivess.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "minivess.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "minivess.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/* The port serving /metrics: metrics.port, or the HTTP port. */}}
{{- define "minivess.metricsPort" -}}
{{- if and .Values.metrics.port (ne (int .Values.metrics.port) (int .Values.http.port)) }}
{{- .Values.metrics.port }}
{{- else }}
{{- .Values.http.port }}
{{- end }}
{{- end }}

{{- define "minivess.separateMetricsPort" -}}
{{- if and .Values.metrics.port (ne (int .Values.metrics.port) (int .Values.http.port)) }}true{{- end }}
{{- end }}

{{/* A CA (ca.crt) is in the TLS Secret: tls.ca, or tls.existingSecretHasCA for an existing Secret. */}}
{{- define "minivess.tlsCA" -}}
{{- if .Values.tls.existingSecret }}
{{- if .Values.tls.existingSecretHasCA }}true{{- end }}
{{- else if .Values.tls.ca }}true{{- end }}
{{- end }}
