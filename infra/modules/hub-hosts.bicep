// Reads the host name of each existing IoT hub (as DPS reports it in assignedHub) and returns the entries of
// IOTHUB_CONNECTIONS. A module because only outputs may loop over values known at deployment time only.
targetScope = 'resourceGroup'

@description('Resource IDs of the existing IoT hubs (any subscription or resource group of the tenant).')
param hubIds array

resource hubs 'Microsoft.Devices/IotHubs@2023-06-30' existing = [for id in hubIds: {
  name: last(split(id, '/'))
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
}]

@description('Host name of each hub, in the order given.')
output hostNames array = [for (id, i) in hubIds: hubs[i].properties.hostName]

@description('"<host>":"identity" per hub: every hub is reached with the app identity, never a key.')
output entries array = [for (id, i) in hubIds: '"${hubs[i].properties.hostName}":"identity"']
