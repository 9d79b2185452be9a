module celeriac.local/pause

go 1.21
