// Role assignments for the app's identity on one existing IoT hub (deployed into the hub's resource group).
targetScope = 'resourceGroup'

@description('Name of the existing IoT hub.')
param hubName string

@description('Principal (object) ID of the app\'s user-assigned managed identity.')
param principalId string

@description('Also grant read-only data access (IoT Hub Data Reader) for registry queries; see infra/README.md.')
param grantQueryRead bool = true

// Built-in role definition IDs (the same in every tenant).
var iotHubRegistryContributor = '4ea46cd5-c1b2-4a8e-910b-273211f9ce47'
var iotHubDataReader = 'b447c946-2db7-41ec-983d-d8bf3b1c77e3'

resource hub 'Microsoft.Devices/IotHubs@2023-06-30' existing = {
  name: hubName
}

// Why: the revocation disables, enables and deletes device identities, singly and in bulk (devices/*).
resource registryContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, principalId, iotHubRegistryContributor)
  scope: hub
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', iotHubRegistryContributor)
    description: 'unprovision: disable/enable/delete device identities (single and bulk registry operations).'
  }
}

// Why: group purges and the audit list devices with a registry query (SELECT * FROM devices), which reads twins.
resource dataReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantQueryRead) {
  name: guid(hub.id, principalId, iotHubDataReader)
  scope: hub
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', iotHubDataReader)
    description: 'unprovision: read-only registry queries over device twins (group purge, audit).'
  }
}

@description('Host name of the hub as DPS reports it in assignedHub (the key in IOTHUB_CONNECTIONS).')
output hostName string = hub.properties.hostName
