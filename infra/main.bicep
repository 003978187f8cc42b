// unprovision in Azure: Function App (Flex Consumption, Python), storage with identity-based access, the
// lifecycle and work queues, the journal tables, Application Insights + Log Analytics, Key Vault for the DPS
// connection string, an optional Service Bus namespace, one user-assigned managed identity, and least-privilege
// role assignments (each one says why it is needed). Deploy with `azd up` or `az deployment group create`
// (docs/deploy.md). The existing IoT hubs and DPS instance are parameters; nothing here creates or changes them,
// except role assignments on the hubs.
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------- parameters

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd sets it); part of every resource name\'s hash and the azd-env-name tag.')
param environmentName string

@description('Region of every resource created here.')
param location string = resourceGroup().location

@allowed(['3.11', '3.12'])
@description('Python version of the Functions worker. Both are tested (README "Supported Python").')
param pythonVersion string = '3.11'

@description('Comma-separated resource IDs of the existing IoT hubs the app revokes devices in (any subscription or resource group of the tenant).')
param iotHubResourceIds string = ''

@description('Resource ID of the existing Device Provisioning Service instance.')
param dpsResourceId string

@description('Shared access policy of the DPS whose key the template copies into Key Vault (rights: EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite). Empty: you store the secret yourself (docs/deploy.md).')
param dpsPolicyName string = ''

@allowed(['primary', 'secondary'])
@description('Which key of dpsPolicyName goes into Key Vault (switch to rotate the other one).')
param dpsKeySlot string = 'primary'

@description('Create a Service Bus namespace with the event queue (second event source) and the outcome queue.')
param deployServiceBus bool = false

@description('Storage queue asset trackers write lifecycle events to (LIFECYCLE_QUEUE).')
param lifecycleQueueName string = 'device-lifecycle'

@description('Storage queue of per-hub group batches (WORK_QUEUE).')
param workQueueName string = 'device-lifecycle-work'

@description('Storage queue of requested audits (AUDIT_QUEUE): POST /api/audit enqueues, the audit worker runs them.')
param auditQueueName string = 'device-lifecycle-audit'

@description('The audit reports events still unfinished after this many minutes (AUDIT_STUCK_AFTER_MINUTES).')
param auditStuckAfterMinutes int = 60

@description('Prefix of the journal and audit table names (JOURNAL_TABLE_PREFIX): a letter then up to 31 letters or digits, or empty.')
@maxLength(32)
param journalTablePrefix string = ''

@description('Six-field NCRONTAB of the audit timer (AUDIT_SCHEDULE).')
param auditSchedule string = '0 0 * * * *'

@description('Whether the audit re-applies revocations it finds reversed (AUDIT_REMEDIATE).')
param auditRemediate bool = false

@description('JSON object overriding the revocation policy per event type (POLICY_OVERRIDE); empty: built-in policy.')
param policyOverride string = ''

@description('Comma-separated event sources allowed to force a found over the queues (FORCE_SOURCES); empty: none.')
param forceSources string = ''

@description('Identity-registry ops/min the app spends per hub (IOTHUB_REGISTRY_OPS_PER_MINUTE): a number or a JSON object by hub host name.')
param registryOpsPerMinute string = '100'

@description('Devices above which a group revocation uses an import job (GROUP_IMPORT_JOB_THRESHOLD).')
param groupImportJobThreshold int = 1000

@description('Whether single devices\' hub steps may wait in a per-hub set during an event storm (STORM_COALESCING).')
param stormCoalescing bool = true

@description('Steps waiting in one hub\'s set from which a flush applies them by an import job (STORM_JOB_THRESHOLD).')
param stormJobThreshold int = 50

@description('The audit warns about signing certificates expiring within this many days (CERT_EXPIRY_WARNING_DAYS).')
param certExpiryWarningDays int = 30

@description('Storage redundancy of the app\'s account.')
@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_RAGRS', 'Standard_GZRS', 'Standard_RAGZRS'])
param storageSku string = 'Standard_ZRS'

@description('Upper bound of Flex Consumption instances (caps parallel group work, hence hub throttling pressure).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([512, 2048, 4096])
@description('Memory of each Flex Consumption instance, in MB.')
param instanceMemoryMB int = 2048

@description('Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 90

@description('Object ID of the person or pipeline deploying (azd sets it). When set, it may write the DPS secret (Key Vault Secrets Officer on this vault only).')
param principalId string = ''

@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string = 'User'

// ------------------------------------------------------------------------------------------------- names

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName, app: 'unprovision' }
var appName = 'func-unprov-${token}'
var storageName = 'stunprov${token}'
var vaultName = 'kv-unprov-${token}'
var serviceBusName = 'sb-unprov-${token}'
var deploymentContainer = 'app-package'
var dpsSecretName = 'dps-connection-string'
var serviceBusEventQueue = 'device-lifecycle'
var serviceBusOutcomeQueue = 'device-lifecycle-outcomes'
// Tables the app uses (it also creates them itself when missing: create_table_if_not_exists).
var tableKinds = ['journal', 'journaltargets', 'journalrejections', 'journalleases', 'auditreports', 'auditsuppressions', 'auditlease', 'throttle', 'pending']
// Poison queues are created by the Functions host on the fifth failed delivery; created here so the audit
// (POISON_MESSAGES_PENDING) and the alert queries have something to read from day one.
var queueNames = [lifecycleQueueName, '${lifecycleQueueName}-poison', workQueueName, '${workQueueName}-poison', auditQueueName, '${auditQueueName}-poison']

// Built-in role definition IDs (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
}

var hubIds = empty(iotHubResourceIds) ? [] : split(replace(iotHubResourceIds, ' ', ''), ',')

// -------------------------------------------------------------------------------------------- monitoring

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-unprov-${token}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: logRetentionDays
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-unprov-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    // Ingestion only with Microsoft Entra ID (the app's identity, Monitoring Metrics Publisher below).
    DisableLocalAuth: true
  }
}

// ------------------------------------------------------------------------------------------------ identity

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-unprov-${token}'
  location: location
  tags: tags
}

// ------------------------------------------------------------------------------------------------- storage

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: no VNet in this template: Flex Consumption without VNet integration reaches its storage over the public endpoint; shared keys are off (allowSharedKeyAccess false), so only Entra identities with a data role get in
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35 (public endpoint needed without VNet; keys off, no anonymous blob access)
  // checkov:skip=CKV_AZURE_206: replication is the storageSku parameter (default Standard_ZRS), which the scanner cannot resolve
  // checkov:skip=CKV_AZURE_43: the name is 'stunprov' + uniqueString() = 21 lower-case letters and digits, valid; the scanner cannot resolve it
  name: storageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: storageSku }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    // Identity only: no account key works, so none can leak (the app uses AzureWebJobsStorage__* identity settings).
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deploymentContainer
  properties: { publicAccess: 'None' }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for name in queueNames: {
  parent: queueService
  name: name
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for kind in tableKinds: {
  parent: tableService
  name: '${journalTablePrefix}${kind}'
}]

// --------------------------------------------------------------------------------------------- key vault

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the platform resolves the Key Vault reference from outside any VNet here; access is RBAC only (Secrets User for the app, Secrets Officer for the deployer)
  // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109 (no VNet; RBAC-only vault, two role assignments)
  name: vaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// The DPS service SDK in use takes only a connection string: it lives in Key Vault, never in an app setting
// or an output. With dpsPolicyName the template copies the policy's key there; without it the operator does.
module dpsSecret 'modules/dps-secret.bicep' = if (!empty(dpsPolicyName)) {
  name: 'unprov-dps-secret-${token}'
  params: {
    vaultName: vault.name
    secretName: dpsSecretName
    dpsResourceId: dpsResourceId
    policyName: dpsPolicyName
    keySlot: dpsKeySlot
  }
}

// ----------------------------------------------------------------------------------- service bus (optional)

resource serviceBus 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = if (deployServiceBus) {
  name: serviceBusName
  location: location
  tags: tags
  sku: { name: 'Standard', tier: 'Standard' }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource eventQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = if (deployServiceBus) {
  parent: serviceBus
  name: serviceBusEventQueue
  properties: {
    maxDeliveryCount: 5
    lockDuration: 'PT5M'
    deadLetteringOnMessageExpiration: true
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT1H'
  }
}

resource outcomeQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = if (deployServiceBus) {
  parent: serviceBus
  name: serviceBusOutcomeQueue
  properties: {
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
  }
}

// ------------------------------------------------------------------------------------------ function app

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy is region-dependent and opt-in; the app is at-least-once and idempotent, a zone outage delays revocations rather than losing them (queued)
  name: 'plan-unprov-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

module hubAccess 'modules/hub-access.bicep' = [for (hubId, i) in hubIds: {
  name: 'unprov-hub-${i}-${token}'
  scope: resourceGroup(split(hubId, '/')[2], split(hubId, '/')[4])
  params: {
    hubName: last(split(hubId, '/'))
    principalId: appIdentity.properties.principalId
  }
}]

// IOTHUB_CONNECTIONS: every hub by the host name DPS reports, reached with the app's identity (no keys).
module hubHosts 'modules/hub-hosts.bicep' = {
  name: 'unprov-hub-hosts-${token}'
  params: { hubIds: hubIds }
}
var identityConnection = {
  credential: 'managedidentity'
  clientId: appIdentity.properties.clientId
}

var baseSettings = [
  // Host storage, identity-based (Storage Blob/Queue/Table roles below).
  { name: 'AzureWebJobsStorage__accountName', value: storage.name }
  { name: 'AzureWebJobsStorage__credential', value: identityConnection.credential }
  { name: 'AzureWebJobsStorage__clientId', value: identityConnection.clientId }
  // DefaultAzureCredential (hubs, outcome sender) picks the user-assigned identity by this client ID.
  { name: 'AZURE_CLIENT_ID', value: appIdentity.properties.clientId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD' }
  // The app's own settings (shared/adapters/settings.py; docs/deploy.md lists each).
  { name: 'DPS_CONNECTION_STRING', value: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${dpsSecretName})' }
  { name: 'IOTHUB_CONNECTIONS', value: '{${join(hubHosts.outputs.entries, ',')}}' }
  { name: 'JOURNAL_CONNECTION__tableServiceUri', value: storage.properties.primaryEndpoints.table }
  { name: 'JOURNAL_CONNECTION__credential', value: identityConnection.credential }
  { name: 'JOURNAL_CONNECTION__clientId', value: identityConnection.clientId }
  { name: 'LIFECYCLE_QUEUE', value: lifecycleQueueName }
  { name: 'WORK_QUEUE', value: workQueueName }
  { name: 'JOURNAL_TABLE_PREFIX', value: journalTablePrefix }
  { name: 'AUDIT_SCHEDULE', value: auditSchedule }
  { name: 'AUDIT_REMEDIATE', value: string(auditRemediate) }
  { name: 'AUDIT_QUEUE', value: auditQueueName }
  { name: 'AUDIT_STUCK_AFTER_MINUTES', value: string(auditStuckAfterMinutes) }
  { name: 'POLICY_OVERRIDE', value: policyOverride }
  { name: 'FORCE_SOURCES', value: forceSources }
  { name: 'IOTHUB_REGISTRY_OPS_PER_MINUTE', value: registryOpsPerMinute }
  { name: 'GROUP_IMPORT_JOB_THRESHOLD', value: string(groupImportJobThreshold) }
  { name: 'STORM_COALESCING', value: string(stormCoalescing) }
  { name: 'STORM_JOB_THRESHOLD', value: string(stormJobThreshold) }
  { name: 'CERT_EXPIRY_WARNING_DAYS', value: string(certExpiryWarningDays) }
]

var serviceBusSettings = deployServiceBus ? [
  { name: 'SERVICEBUS_CONNECTION__fullyQualifiedNamespace', value: '${serviceBusName}.servicebus.windows.net' }
  { name: 'SERVICEBUS_CONNECTION__credential', value: identityConnection.credential }
  { name: 'SERVICEBUS_CONNECTION__clientId', value: identityConnection.clientId }
  { name: 'SERVICEBUS_QUEUE', value: serviceBusEventQueue }
  { name: 'OUTCOME_SERVICEBUS_CONNECTION__fullyQualifiedNamespace', value: '${serviceBusName}.servicebus.windows.net' }
  { name: 'OUTCOME_SERVICEBUS_CONNECTION__credential', value: identityConnection.credential }
  { name: 'OUTCOME_SERVICEBUS_CONNECTION__clientId', value: identityConnection.clientId }
  { name: 'OUTCOME_QUEUE_OR_TOPIC', value: serviceBusOutcomeQueue }
] : []

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: the operator HTTP API must be reachable without a VNet; every route but the OpenAPI document needs a function key
  // checkov:skip=CKV_AZURE_17: callers authenticate with function keys (or Entra in front); client certificates would add a second, unused scheme
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per trigger; a queued event waits for an instance instead of failing over
  // checkov:skip=CKV_AZURE_213: App Service health check does not apply to Flex Consumption function apps; failures surface through the journal, poison queues and the alerts in docs/operations.md
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${appIdentity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: appIdentity.id
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(baseSettings, serviceBusSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
  dependsOn: [packageContainer, queues, tables, dpsSecret, hubAccess, storageBlobOwner, storageQueueContributor, storageTableContributor, vaultSecretsUser, metricsPublisher]
}

resource functionLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: functionApp
  properties: {
    workspaceId: logs.id
    logs: [{ category: 'FunctionAppLogs', enabled: true }]
    metrics: [{ category: 'AllMetrics', enabled: true }]
  }
}

// -------------------------------------------------------------------------------------- role assignments
// Each is scoped as narrowly as the resource allows and says why it exists (docs/deploy.md has the table).

// Why: the Functions host keeps its leases and keys in blobs of AzureWebJobsStorage, and Flex Consumption
// reads the deployment package from the app-package container with this identity.
resource storageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    description: 'unprovision: Functions host storage (leases, keys) and the Flex deployment package container.'
  }
}

// Why: queue triggers read and delete lifecycle/work messages and move failures to -poison; the app enqueues
// group batches on the work queue and the audit peeks the poison queues.
resource storageQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    description: 'unprovision: queue triggers, work-queue fan-out, poison-queue audit.'
  }
}

// Why: the journal, audit reports, suppressions and the shared per-hub token bucket are tables.
resource storageTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    description: 'unprovision: journal, audit and throttle tables.'
  }
}

// Why: the DPS_CONNECTION_STRING app setting is a Key Vault reference resolved with this identity (read only).
resource vaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appIdentity.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    description: 'unprovision: resolve the DPS connection string Key Vault reference.'
  }
}

// Why: the deploying operator stores or rotates the DPS secret (only this vault; only when principalId is given).
resource vaultSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(vault.id, principalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    description: 'unprovision: operator writes/rotates the DPS connection string secret.'
  }
}

// Why: Application Insights accepts telemetry only with Entra ID (DisableLocalAuth); the app publishes as itself.
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, appIdentity.id, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    description: 'unprovision: send logs and metrics to Application Insights with Entra ID.'
  }
}

// Why: the Service Bus trigger receives (peek-lock, complete, abandon) lifecycle events; scoped to that queue only.
resource serviceBusReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployServiceBus) {
  name: guid(serviceBusName, serviceBusEventQueue, appIdentity.id, roles.serviceBusDataReceiver)
  scope: eventQueue
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    description: 'unprovision: receive lifecycle events from the Service Bus event queue.'
  }
}

// Why: outcome notifications are sent to the outcome queue; send only, scoped to that queue only.
resource serviceBusSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployServiceBus) {
  name: guid(serviceBusName, serviceBusOutcomeQueue, appIdentity.id, roles.serviceBusDataSender)
  scope: outcomeQueue
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    description: 'unprovision: publish revocation outcomes to the Service Bus outcome queue.'
  }
}

// ------------------------------------------------------------------------------------------------- outputs
// What an operator needs next; no key, connection string or SAS token (a test checks).

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.name
output FUNCTION_APP_URL string = 'https://${functionApp.properties.defaultHostName}'
output STORAGE_ACCOUNT_NAME string = storage.name
output LIFECYCLE_QUEUE_URL string = '${storage.properties.primaryEndpoints.queue}${lifecycleQueueName}'
output WORK_QUEUE_NAME string = workQueueName
output KEY_VAULT_NAME string = vault.name
output DPS_SECRET_NAME string = dpsSecretName
output DPS_SECRET_STORED_BY_TEMPLATE bool = !empty(dpsPolicyName)
output APP_IDENTITY_CLIENT_ID string = appIdentity.properties.clientId
output APP_IDENTITY_PRINCIPAL_ID string = appIdentity.properties.principalId
output APPLICATION_INSIGHTS_NAME string = insights.name
output LOG_ANALYTICS_WORKSPACE_ID string = logs.id
output IOT_HUB_HOST_NAMES array = hubHosts.outputs.hostNames
output SERVICEBUS_NAMESPACE string = deployServiceBus ? '${serviceBusName}.servicebus.windows.net' : ''
output SERVICEBUS_EVENT_QUEUE string = deployServiceBus ? serviceBusEventQueue : ''
output SERVICEBUS_OUTCOME_QUEUE string = deployServiceBus ? serviceBusOutcomeQueue : ''
